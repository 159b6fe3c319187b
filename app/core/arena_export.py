"""Arena datasets: preference rows from comparisons, written as JSON Lines or CSV.

The pure-statistics side (win rates, Bradley-Terry, agreement) is :mod:`app.core.arena_stats`;
this module only turns comparisons into files others can fit again.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from app.core.arena_stats import Comparison

PREFERENCE_FIELDS = (
    "prompt",
    "winner",
    "loser",
    "winner_model",
    "loser_model",
    "criterion",
    "rater",
    "pair_id",
)


def preference_rows(comparisons: Iterable[Comparison]) -> list[dict[str, str]]:
    """One preference row per decided vote (ties and skips are left out).

    ``winner``/``loser`` are the images' references, ``winner_model``/``loser_model`` the
    models that drew them; the other fields come from the comparison (``""`` when unset).
    """
    rows = []
    for c in comparisons:
        if c.winner is None:
            continue
        images = {c.model_a: c.image_a, c.model_b: c.image_b}
        if images[c.winner] is None or images[c.loser] is None:
            raise ValueError(f"comparison of pair {c.pair_id!r} has no image references")
        rows.append(
            {
                "prompt": c.prompt,
                "winner": images[c.winner],
                "loser": images[c.loser],
                "winner_model": c.winner,
                "loser_model": c.loser,
                "criterion": c.criterion,
                "rater": c.rater or "",
                "pair_id": c.pair_id or "",
            }
        )
    return rows


def to_jsonl(rows: Iterable[Mapping[str, object]]) -> str:
    """JSON Lines, one object per row, text kept verbatim (UTF-8, no ASCII escaping)."""
    return "".join(json.dumps(dict(row), ensure_ascii=False) + "\n" for row in rows)


def _csv_safe(value: str) -> str:
    """Prefix ``'`` to cells a spreadsheet would run as a formula (CSV injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def to_csv(rows: Iterable[Mapping[str, object]], fields: Sequence[str] = PREFERENCE_FIELDS) -> str:
    """CSV with a header of ``fields``; formula-like cells get a ``'`` prefix, None is empty."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_safe("" if row[k] is None else str(row[k])) for k in fields})
    return buffer.getvalue()


def write_preference_dataset(
    comparisons: Iterable[Comparison], path: str | Path, fmt: str | None = None
) -> int:
    """Write the preference rows as ``jsonl`` or ``csv`` (default: from the suffix), atomically.

    Returns the number of rows written.
    """
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    if fmt not in ("jsonl", "csv"):
        raise ValueError(f"format must be 'jsonl' or 'csv', got {fmt!r}")
    rows = preference_rows(comparisons)
    text = to_jsonl(rows) if fmt == "jsonl" else to_csv(rows)
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(rows)


EXPORT_VIEWS = ("votes", "preferences")


def export_name(campaign_id: int, name: str, view: str, fmt: str) -> str:
    """The download's file name: ``campaign-ID-NAME-VIEW.FMT`` with the campaign's name reduced
    to letters, digits and dashes (so it is safe in a header and on any file system)."""
    slug = "-".join(
        "".join(c if c.isascii() and c.isalnum() else " " for c in name.lower()).split()
    )[:40]
    middle = f"-{slug}" if slug else ""
    return f"campaign-{campaign_id}{middle}-{'raw-votes' if view == 'votes' else view}.{fmt}"
