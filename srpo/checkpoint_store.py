"""Checkpoints kept at an fsspec URL too: storage every node of a multi-node run reaches.

``checkpoint_url`` (``s3://bucket/run``, ``gs://...``, ``file:///shared/run``, ``memory://run``)
names a folder that holds ``step-000010/`` and so on. The main process writes each checkpoint
into its output folder as always, then copies it there: the files first and the manifest last,
so a folder there with a manifest is complete. On start, every rank resumes from the URL's
newest checkpoint, fetching it into its output folder unless it is there (into a temporary
folder, renamed once every sha256 matches), so a run resumes on whichever nodes it lands on.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from srpo.checkpoints import MANIFEST, Checkpoint, verify


def _filesystem(url: str):
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    return fs, root.rstrip("/")


def upload_checkpoint(checkpoint: Checkpoint, url: str) -> str:
    """Copy a verified checkpoint folder to ``url``; returns where it went."""
    fs, root = _filesystem(url)
    target = f"{root}/{checkpoint.path.name}"
    for name in [*checkpoint.manifest["files"], MANIFEST]:  # the manifest last: complete
        destination = f"{target}/{name}"
        fs.makedirs(destination.rsplit("/", 1)[0], exist_ok=True)
        fs.put_file(str(checkpoint.path / name), destination)
    return fs.unstrip_protocol(target)


def remote_steps(url: str) -> list[int]:
    """The steps of the complete checkpoints at ``url``, newest first."""
    fs, root = _filesystem(url)
    if not fs.exists(root):
        return []
    steps = []
    for path in fs.glob(f"{root}/step-*/{MANIFEST}"):
        name = path.rstrip("/").split("/")[-2]
        if name.removeprefix("step-").isdigit():
            steps.append(int(name.removeprefix("step-")))
    return sorted(steps, reverse=True)


def fetch_latest(url: str, output: str | Path) -> Checkpoint | None:
    """The newest complete checkpoint at ``url`` as a verified folder in ``output/checkpoints``
    (fetched unless it is there already); None if ``url`` has none.

    The URL decides, not the output folder: a newer checkpoint that only the main process's
    folder holds (its copy to the URL never finished) would make ranks resume apart."""
    fs, root = _filesystem(url)
    parent = Path(output) / "checkpoints"
    for step in remote_steps(url):
        name = f"step-{step:06d}"
        final = parent / name
        if (found := verify(final)) is not None:
            return found
        parent.mkdir(parents=True, exist_ok=True)
        # Ranks sharing a node (and its output folder) may fetch at once: each its own folder.
        tmp = parent / f".{name}.fetch-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        fs.get(f"{root}/{name}/", str(tmp), recursive=True)
        if verify(tmp) is None:  # damaged there: try the one before it
            shutil.rmtree(tmp, ignore_errors=True)
            continue
        shutil.rmtree(final, ignore_errors=True)  # a damaged local copy
        try:
            os.replace(tmp, final)
        except OSError:  # another rank renamed its copy first
            shutil.rmtree(tmp, ignore_errors=True)
        return verify(final)
    return None
