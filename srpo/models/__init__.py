"""Generator backends behind one protocol."""

from __future__ import annotations

from srpo.models.base import Conditioning, Generator, PromptEncoder

MODEL_NAMES = ("tiny", "flux")


def load_generator(name: str, path: str | None = None, **options) -> Generator:
    """Load a generator by backend name; ``path`` is a local folder or hub id (``flux``) or a
    tiny-world weights folder (``tiny``)."""
    key = name.lower()
    if key == "tiny":
        from srpo.models.tiny import load_tiny_generator
        from srpo.tiny_world.weights import WEIGHTS_DIR

        return load_tiny_generator(path or WEIGHTS_DIR, **options)
    if key == "flux":
        from srpo.models.flux import FluxGenerator

        return FluxGenerator.from_pretrained(path or "black-forest-labs/FLUX.1-dev", **options)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")


__all__ = ["MODEL_NAMES", "Conditioning", "Generator", "PromptEncoder", "load_generator"]
