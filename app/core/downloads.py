"""A checkpoint as one downloadable file that holds everything its loading snippet needs.

A LoRA checkpoint downloads as its single safetensors file (it stores its own adapter
config). A full checkpoint downloads as a zip of its model folder (``transformer/`` with
``config.json`` and the weights, shards and index included), built once under the storage
root's ``downloads/`` folder. The optimizer and RNG state, which only resuming needs, stay
out of both.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path, PurePosixPath

from app.core.models import Checkpoint
from app.core.reads import checkpoint_file
from app.core.settings import Settings

# zip headers per member (local 30 and central 46 bytes, plus the name in each) and the end
# record; members are stored uncompressed (safetensors do not compress)
LOCAL_HEADER, CENTRAL_HEADER, END_RECORD = 30, 46, 22


def bundled(found: Checkpoint) -> bool:
    """Whether the checkpoint downloads as a zip (a full model folder) or as one file."""
    return found.format != "lora"


def members(found: Checkpoint) -> list[str]:
    """The manifest's files the download holds: the weights' folder for a full checkpoint,
    the weights file for a LoRA."""
    if not bundled(found):
        return [found.weights_file]
    folder = PurePosixPath(found.weights_file).parent
    return sorted(name for name in found.files if PurePosixPath(name).parent == folder)


def download_name(found: Checkpoint) -> str:
    """The download's file name, which the snippet loads: ``jobJ-stepS-WEIGHTS`` or
    ``jobJ-stepS.zip``."""
    stem = f"job{found.job_id}-step{found.step}"
    return f"{stem}.zip" if bundled(found) else f"{stem}-{PurePosixPath(found.weights_file).name}"


def download_size(settings: Settings, found: Checkpoint) -> int:
    """Bytes of the download, without building it (a zip's size from its members' sizes)."""
    sizes = {name: checkpoint_file(settings, found, name).stat().st_size for name in members(found)}
    if not bundled(found):
        return sizes[found.weights_file]
    names = sum(2 * len(name.encode()) for name in sizes)
    return sum(sizes.values()) + names + len(sizes) * (LOCAL_HEADER + CENTRAL_HEADER) + END_RECORD


def download_path(settings: Settings, found: Checkpoint) -> Path:
    """The file to serve: the weights, or the checkpoint's zip (built on first use, atomically,
    and named after its weights' sha256 so a re-saved step gets a new one)."""
    if not bundled(found):
        return checkpoint_file(settings, found)
    target = settings.storage / "downloads" / f"checkpoint-{found.id}-{found.sha256[:16]}.zip"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.part")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as bundle:
        for name in members(found):
            bundle.write(checkpoint_file(settings, found, name), arcname=name)
    os.replace(partial, target)
    return target
