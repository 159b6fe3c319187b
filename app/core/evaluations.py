"""Stored evaluations of checkpoints (``srpo eval``'s result, run from the Checkpoints tab),
kept beside the checkpoints, never inside a checkpoint folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from app.core.settings import Settings


def evaluation_path(settings: Settings, checkpoint_id: int) -> Path:
    """Where a checkpoint's evaluation result is kept."""
    return settings.storage / "evaluations" / f"checkpoint-{checkpoint_id}.json"


def load_evaluation(settings: Settings, checkpoint_id: int) -> dict[str, Any] | None:
    """The stored evaluation of a checkpoint, if it was evaluated."""
    path = evaluation_path(settings, checkpoint_id)
    return json.loads(path.read_text()) if path.is_file() else None


def save_evaluation(settings: Settings, checkpoint_id: int, result: dict[str, Any]) -> None:
    """Store a checkpoint's evaluation atomically."""
    path = evaluation_path(settings, checkpoint_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, path)
