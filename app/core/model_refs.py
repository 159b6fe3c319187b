"""Model references (``base`` or ``checkpoint:ID``) resolved from the database, and loaded
through srpo's one loader (:mod:`srpo.models.loader`).

The worker's rendering of pairs and grids and the web layer's Reward Lab and arena scores
load models only through :func:`load` and :class:`ModelCache` here, so a base generator
and a fine-tune are built the same way everywhere: ``srpo.models.load_generator`` for a
base, ``srpo.models.load_finetuned`` for a verified checkpoint folder.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

# Imported here, on the main thread when the studio starts: diffusers' lazy module is not
# thread-safe, and a first import from two Gradio worker threads at once fails with
# "cannot import name 'AutoencoderKL' from 'diffusers'".
import srpo.models.tiny  # noqa: F401
from app.core.errors import NotFound, StudioError
from app.core.models import Checkpoint, Job
from app.core.settings import Settings
from app.core.storage import resolve


@dataclass(frozen=True)
class ModelRef:
    """What it takes to load one model reference, read from the database.

    ``config`` is the training config of the checkpoint's job (for a base: at least
    ``model`` and ``model_path``); ``checkpoint_path`` is None for a base model.
    """

    ref: str
    config: dict[str, Any]
    checkpoint_id: int | None = None
    checkpoint_path: Path | None = None
    step: int | None = None


def checkpoint_for(session: Session, ref: str) -> Checkpoint:
    """The checkpoint a ``checkpoint:ID`` reference names."""
    kind, _, ident = ref.partition(":")
    if kind != "checkpoint" or not ident.isdigit():
        raise StudioError(f"model {ref!r}: use 'base' or 'checkpoint:ID'")
    checkpoint = session.get(Checkpoint, int(ident))
    if checkpoint is None:
        raise NotFound(f"model {ref!r}: no such checkpoint")
    return checkpoint


def base_config(settings: Settings) -> dict[str, Any]:
    """The studio's default base model as a (partial) config."""
    return {"model": settings.default_model, "model_path": None}


def resolve_ref(
    session: Session, settings: Settings, ref: str, base: dict[str, Any] | None = None
) -> ModelRef:
    """The :class:`ModelRef` of ``ref``; ``base`` is what ``base`` means (default: the
    studio's default model)."""
    if ref == "base":
        return ModelRef(ref, base if base is not None else base_config(settings))
    checkpoint = checkpoint_for(session, ref)
    config = session.get(Job, checkpoint.job_id).config
    path = resolve(settings.storage, checkpoint.path)
    return ModelRef(ref, config, checkpoint.id, path, checkpoint.step)


def load(model: ModelRef) -> Any:
    """The generator of a model reference, with its checkpoint's weights applied."""
    from srpo.models import load_finetuned, load_generator

    if model.checkpoint_path is None:
        return load_generator(model.config["model"], model.config.get("model_path"))
    try:
        generator, _ = load_finetuned(model.checkpoint_path)
    except ValueError:
        raise ValueError(f"{model.ref}: the checkpoint files fail their sha256 check") from None
    return generator


def sampling_steps(config: dict[str, Any]) -> tuple[int, float]:
    """Euler steps and shift for sampling a model (the tiny world ships its own)."""
    from srpo.models import sampling_defaults

    defaults = sampling_defaults(config["model"], config.get("model_path"))
    return int(defaults["steps"]), float(defaults["shift"])


def _model_key(model: ModelRef) -> tuple:
    """What makes two references the same model: the reference and, for a base model, the
    backend and folder it means."""
    return (model.ref, model.config.get("model"), model.config.get("model_path"))


class ModelCache:
    """The rewards, generators and sampled images the Reward Lab, compare views and arena
    scores use, loaded on first use and kept (at most ``keep`` rewards and generators and
    ``keep_images`` image sets).

    The base generator is ``settings.default_model``; fine-tunes come from their verified
    checkpoint folders through :func:`load`. Compute on them is serialised by :attr:`lock`
    (one preview at a time on a 2-core machine is faster than two).
    """

    def __init__(self, settings: Settings, keep: int = 2, keep_images: int = 4) -> None:
        self.settings = settings
        self.keep = keep
        self.keep_images = keep_images
        self.lock = threading.Lock()
        self._rewards: OrderedDict[tuple[str, str | None], Any] = OrderedDict()
        self._generators: OrderedDict[tuple, Any] = OrderedDict()
        self._images: OrderedDict[tuple, Any] = OrderedDict()

    def reward(self, name: str | None = None, path: str | None = None) -> Any:
        """A text-image reward by name and weights path (default: the studio's reward),
        kept while it is one of the last ``keep`` used."""
        key = (name or self.settings.default_reward, path or None)
        if key in self._rewards:
            self._rewards.move_to_end(key)
            return self._rewards[key]
        from srpo.rewards import load_reward

        found = load_reward(*key)
        self._rewards[key] = found
        while len(self._rewards) > self.keep:
            self._rewards.popitem(last=False)
        return found

    def images(
        self, model: ModelRef, prompt: str, seeds: list[int], sample: Callable[[], Any]
    ) -> Any:
        """``model``'s images of ``prompt`` at ``seeds``, from ``sample()`` the first time and
        kept for the last :attr:`keep_images` requests. The Lab samples at fixed seeds, so
        the same request gives the same images: a preview that changes only the control
        words, k or the reward need not sample again."""
        key = (_model_key(model), prompt, tuple(seeds))
        if key in self._images:
            self._images.move_to_end(key)
            return self._images[key]
        found = sample()
        self._images[key] = found
        while len(self._images) > self.keep_images:
            self._images.popitem(last=False)
        return found

    def generator(self, model: ModelRef) -> Any:
        """The generator of ``model``, cached by its reference and, for a base model, by
        its backend and folder (the Lab may sample any backend's base)."""
        key = _model_key(model)
        if key in self._generators:
            self._generators.move_to_end(key)
            return self._generators[key]
        generator = load(model)
        self._generators[key] = generator
        while len(self._generators) > self.keep:
            self._generators.popitem(last=False)
        return generator

    def sampling(self) -> tuple[int, float]:
        """Euler steps and shift for sampling the default model."""
        return sampling_steps(base_config(self.settings))
