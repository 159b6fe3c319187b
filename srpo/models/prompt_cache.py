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

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        missing = list(dict.fromkeys(p for p in prompts if not self.is_cached(p)))
        if missing:
            if self._encoder is None:
                self._encoder = self.factory()
            sequences, pooled = self._encoder.encode(missing)
            for prompt, seq, pool in zip(missing, sequences, pooled, strict=True):
                self._store(prompt, seq, pool)
        loaded = [load_file(str(self._path(p))) for p in prompts]
        return torch.stack([x["sequence"] for x in loaded]), torch.stack(
            [x["pooled"] for x in loaded]
        )

    def _store(self, prompt: str, sequence: torch.Tensor, pooled: torch.Tensor) -> None:
        path = self._path(prompt)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {
            "sequence": sequence.detach().cpu().contiguous(),
            "pooled": pooled.detach().cpu(),
        }
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
