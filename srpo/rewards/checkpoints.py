"""Loading reward weights: local files or hub files, HPS-style dicts, clear key errors."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn


def resolve_file(spec: str | Path, default_repo: str) -> Path:
    """A local checkpoint path, or a hub file (``name`` in ``default_repo``, or ``owner/repo/name``).

    Raises ``FileNotFoundError`` naming what was tried when neither is available.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    text = str(spec)
    parts = text.split("/")
    if len(parts) == 1:
        repo, filename = default_repo, text
    elif len(parts) == 3 and not text.startswith((".", "/", "~")):
        repo, filename = f"{parts[0]}/{parts[1]}", parts[2]
    else:
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename))
    except Exception as error:
        raise FileNotFoundError(
            f"checkpoint {text!r} is neither a local file nor downloadable from the hub "
            f"repo {repo!r} ({type(error).__name__}: {str(error).splitlines()[0][:200]})"
        ) from error


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint saved as safetensors or torch, bare or as ``{"state_dict": ...}``.

    ``module.`` prefixes left by DataParallel/DDP are stripped.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw: Mapping = load_file(str(path))
    else:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ValueError(f"cannot read checkpoint {path}: {error}") from error
    if isinstance(raw, Mapping) and "state_dict" in raw and isinstance(raw["state_dict"], Mapping):
        raw = raw["state_dict"]
    if not isinstance(raw, Mapping) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ValueError(f"checkpoint {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in raw.items()}


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly, raising ``ValueError`` that names missing, extra and misshaped keys."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        f"{k} {list(state[k].shape)} != {list(expected[k].shape)}"
        for k in set(expected) & set(state)
        if state[k].shape != expected[k].shape
    )
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", misshaped)):
        if keys:
            shown = ", ".join(keys[:5]) + (f", ... ({len(keys)} in all)" if len(keys) > 5 else "")
            problems.append(f"{label} keys: {shown}")
    if problems:
        raise ValueError(f"checkpoint {source} does not match the model; " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
