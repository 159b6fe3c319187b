"""Shipped tiny-world weights: safetensors files plus a manifest with sha256 and configs.

Weights are stored in float16 (the package stays small) and loaded as float32. Loading
verifies each file's sha256 against the manifest and names the file on any mismatch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from srpo.files import sha256_file
from srpo.rewards.checkpoints import load_into

WEIGHTS_DIR = Path(__file__).parent / "weights"
MANIFEST = "manifest.json"
COMPONENTS = ("vae", "reward", "transformer", "text_encoder")


class WeightsError(ValueError):
    """A shipped weight file is missing, corrupt or does not match its manifest."""


def save_component(directory: Path, name: str, module: nn.Module) -> dict[str, Any]:
    """Save a module's state in float16; returns its manifest entry."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.safetensors"
    state = {
        k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous()
        for k, v in module.state_dict().items()
    }
    save_file(state, str(path))
    return {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def read_manifest(directory: Path = WEIGHTS_DIR) -> dict[str, Any]:
    """The manifest of a weights folder."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise WeightsError(
            f"tiny-world manifest not found: {path}; run `srpo tiny-world train` to create it"
        )
    return json.loads(path.read_text())


def load_component(module: nn.Module, name: str, directory: Path = WEIGHTS_DIR) -> nn.Module:
    """Load a verified component's weights into ``module`` (float32); returns the module."""
    entry = read_manifest(directory)["files"].get(name)
    if entry is None:
        raise WeightsError(f"the tiny-world manifest has no entry for {name!r}")
    path = Path(directory) / entry["file"]
    if not path.is_file():
        raise WeightsError(
            f"missing tiny-world weight file {path} (expected sha256 {entry['sha256']})"
        )
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise WeightsError(
            f"corrupt tiny-world weight file {path}: sha256 {actual}, expected {entry['sha256']}"
        )
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    load_into(module, state, str(path))
    return module
