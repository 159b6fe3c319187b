"""Generator backends behind one protocol, and the one loader of models and checkpoints."""

from __future__ import annotations

from srpo.models.base import Conditioning, Generator, PromptEncoder
from srpo.models.loader import (
    MODEL_NAMES,
    apply_checkpoint,
    generator_for,
    load_finetuned,
    load_generator,
    load_run_checkpoint,
    sampling_defaults,
)

__all__ = [
    "MODEL_NAMES",
    "Conditioning",
    "Generator",
    "PromptEncoder",
    "apply_checkpoint",
    "generator_for",
    "load_finetuned",
    "load_generator",
    "load_run_checkpoint",
    "sampling_defaults",
]
