"""The one loader of generators: by backend name, from a training config, or from a checkpoint.

The trainer, ``srpo eval`` and ``srpo sample``, the worker's rendering and the Reward Lab all
load through here, so none of them imports the trainer to get a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from srpo.models.base import Generator

if TYPE_CHECKING:
    from torch import nn

    from srpo.checkpoints import Checkpoint
    from srpo.config import LoRA, TrainConfig

MODEL_NAMES = ("tiny", "flux")
FLUX_HUB_ID = "black-forest-labs/FLUX.1-dev"
# FluxPipeline's sampler: 28 steps at shift 3 (the FLUX.1-dev model card's settings).
FLUX_SAMPLING = {"steps": 28, "shift": 3.0}


def load_generator(
    name: str,
    path: str | None = None,
    *,
    precision: str | None = None,
    resolution: int | None = None,
    guidance: float | None = None,
    cfg_scale: float | None = None,
    **options,
) -> Generator:
    """A generator by backend name.

    ``path``: a local folder or hub id (``flux``), or a tiny-world weights folder (``tiny``).
    ``precision``: ``fp32`` or ``bf16`` (:mod:`srpo.precision`); by default bf16 for FLUX and
    fp32 for the tiny world. ``resolution`` (square) and ``guidance`` apply to FLUX only (the
    tiny world is 64 px without a guidance embedding); ``cfg_scale`` to both.
    """
    key = name.lower()
    if key == "tiny":
        from srpo.models.tiny import load_tiny_generator
        from srpo.tiny_world.weights import WEIGHTS_DIR

        return load_tiny_generator(
            path or WEIGHTS_DIR, cfg_scale=cfg_scale, precision=precision or "fp32"
        )
    if key == "flux":
        from srpo.models.flux import FluxGenerator

        if resolution is not None:
            options["resolution"] = (resolution, resolution)
        if guidance is not None:
            options["guidance"] = guidance
        generator = FluxGenerator.from_pretrained(
            path or FLUX_HUB_ID, precision=precision or "bf16", **options
        )
        if cfg_scale is not None:
            generator.cfg_scale = float(cfg_scale)
        return generator
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")


def sampling_defaults(name: str, path: str | None = None) -> dict[str, float]:
    """Euler steps and shift for sampling a backend (the tiny world ships its own)."""
    if name.lower() == "tiny":
        from srpo.models.tiny import sampling_defaults as tiny_defaults
        from srpo.tiny_world.weights import WEIGHTS_DIR

        return tiny_defaults(path or WEIGHTS_DIR)
    return dict(FLUX_SAMPLING)


def generator_for(config: TrainConfig) -> Generator:
    """The generator a training config names, at its resolution, guidance and precision."""
    return load_generator(
        config.model,
        config.model_path,
        precision=config.precision,
        resolution=config.resolution if config.model == "flux" else None,
        guidance=config.train_guidance,
        cfg_scale=config.cfg_scale if config.cfg_scale != 1.0 else None,
    )


def add_lora(transformer: nn.Module, lora: LoRA) -> None:
    """Attach LoRA adapters (peft, Gaussian init of A, zero B) to the transformer."""
    from peft import LoraConfig

    transformer.add_adapter(
        LoraConfig(
            r=lora.rank,
            lora_alpha=lora.alpha,
            target_modules=list(lora.target_modules),
            init_lora_weights="gaussian",
        )
    )


def load_run_checkpoint(path: str | Path) -> tuple[Checkpoint, TrainConfig]:
    """A verified checkpoint folder and the training config its manifest records."""
    from srpo.checkpoints import verify
    from srpo.config import make_config

    checkpoint = verify(Path(path))
    if checkpoint is None:
        raise ValueError(f"{path} is not a complete checkpoint (missing files or bad sha256)")
    return checkpoint, make_config(checkpoint.manifest["config"])


def apply_checkpoint(generator: Generator, checkpoint: Checkpoint, config: TrainConfig) -> None:
    """Load a checkpoint's weights (LoRA adapters or the full transformer) into ``generator``."""
    from srpo.checkpoints import load_checkpoint

    if config.lora is not None:
        add_lora(generator.transformer, config.lora)
    load_checkpoint(checkpoint, generator.transformer, None)
    generator.transformer.eval().requires_grad_(False)


def load_finetuned(path: str | Path) -> tuple[Generator, TrainConfig]:
    """The generator of a run with the checkpoint at ``path`` applied, and the run's config."""
    checkpoint, config = load_run_checkpoint(path)
    generator = generator_for(config)
    apply_checkpoint(generator, checkpoint, config)
    return generator, config
