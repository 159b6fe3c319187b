"""Training checkpoints: written atomically, verified by sha256, found again on resume.

A checkpoint is a folder ``checkpoints/step-000010/`` holding the trained weights (LoRA in
the diffusers format ``FluxPipeline.load_lora_weights`` reads, its ``LoraConfig`` with rank and
alpha in the file's metadata so that diffusers loads it at the trained strength; or the full
transformer in the diffusers folder layout), the optimiser state, RNG states, the step and a
manifest with the sha256 of every file. It is written as ``.step-000010.tmp`` and renamed
when complete, so a crash during a save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from srpo.files import sha256_file, write_json_atomic

LORA_FILE = "pytorch_lora_weights.safetensors"
MANIFEST = "manifest.json"
ADAPTER = "default"  # peft's adapter name: add_adapter's and get_peft_model_state_dict's default


@dataclass(frozen=True)
class Checkpoint:
    """A complete, verified checkpoint on disk."""

    path: Path
    step: int
    format: str
    manifest: dict[str, Any]


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states saved by :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def lora_state_dict(
    transformer: nn.Module, state_dict: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """The transformer's LoRA weights with diffusers' ``transformer.`` prefix.

    ``state_dict``: the full (gathered) state of a sharded model; by default the module's own.
    """
    from peft.utils import get_peft_model_state_dict

    lora = get_peft_model_state_dict(transformer, state_dict=state_dict)
    return {f"transformer.{k}": v for k, v in lora.items()}


def lora_adapter_metadata(transformer: nn.Module) -> dict[str, Any]:
    """The ``LoraConfig`` of the transformer's ``default`` adapter as a dict (rank, alpha, ...).

    What diffusers' training scripts pass to ``save_lora_weights`` as
    ``transformer_lora_adapter_metadata`` (``diffusers.training_utils._collate_lora_metadata``);
    ``load_lora_weights`` builds its ``LoraConfig`` from it instead of guessing ``alpha = rank``.
    """
    return transformer.peft_config[ADAPTER].to_dict()


def _save_lora(folder: Path, transformer: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """``state`` (``transformer.``-prefixed) and the adapter config, as diffusers saves them.

    diffusers' ``save_lora_weights`` writes the config as JSON under the safetensors metadata
    key ``lora_adapter_metadata``, each field prefixed ``transformer.``.
    """
    from diffusers.loaders import FluxLoraLoaderMixin

    FluxLoraLoaderMixin.save_lora_weights(
        folder,
        transformer_lora_layers={k.removeprefix("transformer."): v for k, v in state.items()},
        weight_name=LORA_FILE,
        safe_serialization=True,
        transformer_lora_adapter_metadata=lora_adapter_metadata(transformer),
    )


def save_checkpoint(
    root: Path,
    step: int,
    transformer: nn.Module,
    lora: bool,
    optimizer: torch.optim.Optimizer,
    manifest: dict[str, Any],
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Checkpoint:
    """Write a checkpoint atomically under ``root/checkpoints``; returns it.

    ``state_dict``: the transformer's full state gathered from all ranks (FSDP); by default the
    module's own.
    """
    parent = Path(root) / "checkpoints"
    parent.mkdir(parents=True, exist_ok=True)
    final = parent / f"step-{step:06d}"
    tmp = parent / f".step-{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    if lora:
        lora_state = lora_state_dict(transformer, state_dict)
        state = {k: v.detach().contiguous().cpu() for k, v in lora_state.items()}
        _save_lora(tmp, transformer, state)
    else:
        transformer.save_pretrained(
            tmp / "transformer", safe_serialization=True, state_dict=state_dict
        )
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(rng_state(), tmp / "rng.pt")
    files = {
        str(path.relative_to(tmp)): sha256_file(path)
        for path in sorted(tmp.rglob("*"))
        if path.is_file()
    }
    entry = {**manifest, "step": step, "format": "lora" if lora else "full", "files": files}
    write_json_atomic(tmp / MANIFEST, entry)
    _fsync_tree(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return Checkpoint(final, step, entry["format"], entry)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def verify(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path`` if its manifest exists and every sha256 matches, else None."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        for name, digest in manifest["files"].items():
            if sha256_file(path / name) != digest:
                return None
        return Checkpoint(path, int(manifest["step"]), manifest["format"], manifest)
    except (OSError, ValueError, KeyError):
        return None


def latest_checkpoint(root: Path) -> Checkpoint | None:
    """The newest complete checkpoint under ``root/checkpoints`` (incomplete ones are skipped)."""
    parent = Path(root) / "checkpoints"
    if not parent.is_dir():
        return None
    for path in sorted(parent.glob("step-*"), reverse=True):
        checkpoint = verify(path)
        if checkpoint is not None:
            return checkpoint
    return None


def load_checkpoint(
    checkpoint: Checkpoint, transformer: nn.Module, optimizer: torch.optim.Optimizer | None
) -> None:
    """Restore weights (and the optimiser and RNG states) from a verified checkpoint."""
    from safetensors.torch import load_file

    if checkpoint.format == "lora":
        from peft.utils import set_peft_model_state_dict

        state = load_file(str(checkpoint.path / LORA_FILE))
        state = {k.removeprefix("transformer."): v for k, v in state.items()}
        set_peft_model_state_dict(transformer, state)
    else:
        from diffusers import FluxTransformer2DModel
        from diffusers.models.modeling_utils import ModelMixin

        # The transformer's own class (SD3, Qwen-Image, ...); FLUX's when it is wrapped.
        cls = type(transformer) if isinstance(transformer, ModelMixin) else FluxTransformer2DModel
        loaded = cls.from_pretrained(checkpoint.path / "transformer")
        transformer.load_state_dict(loaded.state_dict())
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(checkpoint.path / "optimizer.pt", weights_only=False))
        set_rng_state(torch.load(checkpoint.path / "rng.pt", weights_only=False))
