"""Prompt embeddings cached on disk, so that large text encoders load only when needed."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from srpo.models.base import PromptEncoder


class CachedPromptEncoder:
    """A :class:`PromptEncoder` that stores each prompt's embeddings as a safetensors file.

    ``factory`` builds the real encoder; it is called the first time a prompt is missing from
    the cache, and :meth:`release` drops it again. ``namespace`` (model id, settings) keeps
    caches of different encoders apart.

    An encoder that returns ``(sequence, pooled, mask)`` (prompts of their own lengths: Qwen-Image,
    Z-Image) has each prompt stored without its padding; a batch is padded again to its longest
    prompt and returned with its mask, as those pipelines pad a batch.
    """

    def __init__(
        self, factory: Callable[[], PromptEncoder], cache_dir: str | Path, namespace: str
    ) -> None:
        self.factory = factory
        self.cache_dir = Path(cache_dir)
        self.namespace = namespace
        self._encoder: PromptEncoder | None = None

    def _path(self, prompt: str) -> Path:
        key = hashlib.sha256(f"{self.namespace}\0{prompt}".encode()).hexdigest()[:40]
        return self.cache_dir / key[:2] / f"{key}.safetensors"

    def is_cached(self, prompt: str) -> bool:
        """Whether the prompt's embeddings are already on disk."""
        return self._path(prompt).is_file()

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, ...]:
        missing = list(dict.fromkeys(p for p in prompts if not self.is_cached(p)))
        if missing:
            if self._encoder is None:
                self._encoder = self.factory()
            sequences, pooled, *mask = self._encoder.encode(missing)
            lengths = mask[0].sum(-1).tolist() if mask else [None] * len(missing)
            for prompt, seq, pool, n in zip(missing, sequences, pooled, lengths, strict=True):
                self._store(prompt, seq if n is None else seq[: int(n)], pool, masked=bool(mask))
        loaded = [load_file(str(self._path(p))) for p in prompts]
        pooled = torch.stack([x["pooled"] for x in loaded])
        if not all("masked" in x for x in loaded):
            return torch.stack([x["sequence"] for x in loaded]), pooled
        sequence, mask = pad_sequences([x["sequence"] for x in loaded])
        return sequence, pooled, mask

    def _store(
        self, prompt: str, sequence: torch.Tensor, pooled: torch.Tensor, masked: bool = False
    ) -> None:
        path = self._path(prompt)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {
            "sequence": sequence.detach().cpu().contiguous(),
            "pooled": pooled.detach().cpu().contiguous(),
        }
        if masked:
            tensors["masked"] = torch.ones(1)
        handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(handle)
        try:
            save_file(tensors, tmp, metadata={"prompt": prompt[:1000]})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def release(self) -> None:
        """Drop the underlying encoder (its memory) until a new prompt needs it."""
        self._encoder = None


def pad_sequences(sequences: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[L_i, D]`` sequences zero-padded to ``[B, max L, D]`` and their ``[B, max L]`` bool mask."""
    longest = max(seq.shape[0] for seq in sequences)
    padded = sequences[0].new_zeros(len(sequences), longest, sequences[0].shape[-1])
    mask = torch.zeros(len(sequences), longest, dtype=torch.bool, device=padded.device)
    for i, seq in enumerate(sequences):
        padded[i, : seq.shape[0]] = seq
        mask[i, : seq.shape[0]] = True
    return padded, mask
