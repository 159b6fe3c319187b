"""The one loader of generators: by backend name, from a training config, or from a checkpoint.

The trainer, ``srpo eval`` and ``srpo sample``, the worker's rendering and the Reward Lab all
load through here, so none of them imports the trainer to get a model.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from srpo.models.base import Generator

if TYPE_CHECKING:
    from torch import nn

    from srpo.checkpoints import Checkpoint
    from srpo.config import LoRA, TrainConfig

FLUX_HUB_ID = "black-forest-labs/FLUX.1-dev"
# FluxPipeline's sampler: 28 steps at shift 3 (the FLUX.1-dev model card's settings).
FLUX_SAMPLING = {"steps": 28, "shift": 3.0}


@dataclass(frozen=True)
class Backend:
    """A generator backend: its module and class, hub id, pipeline and sampling defaults."""

    name: str
    module: str
    cls: str
    hub_id: str | None
    pipeline: str
    sampling: dict[str, float]

    def load_class(self) -> type:
        return getattr(importlib.import_module(self.module), self.cls)

    def describe(self) -> dict[str, object]:
        """What ``srpo models --json`` prints of it."""
        return {
            "name": self.name,
            "class": f"{self.module}.{self.cls}",
            "hub_id": self.hub_id,
            "pipeline": self.pipeline,
            "sampling": dict(self.sampling),
        }


BACKENDS: dict[str, Backend] = {
    # The tiny world is FLUX's architecture with the project's own weights and sampler.
    "tiny": Backend("tiny", "srpo.models.flux", "FluxGenerator", None, "FluxPipeline", {}),
    "flux": Backend(
        "flux", "srpo.models.flux", "FluxGenerator", FLUX_HUB_ID, "FluxPipeline", FLUX_SAMPLING
    ),
    "sd3": Backend(
        "sd3",
        "srpo.models.sd3",
        "SD3Generator",
        "stabilityai/stable-diffusion-3.5-medium",
        "StableDiffusion3Pipeline",
        {"steps": 40, "shift": 3.0},
    ),
    "qwen-image": Backend(
        "qwen-image",
        "srpo.models.qwen_image",
        "QwenImageGenerator",
        "Qwen/Qwen-Image",
        "QwenImagePipeline",
        {"steps": 50, "shift": 2.0},
    ),
    "flux2": Backend(
        "flux2",
        "srpo.models.flux2",
        "Flux2Generator",
        "black-forest-labs/FLUX.2-dev",
        "Flux2Pipeline",
        # Flux2Pipeline's shift at 1024 px and 50 steps (srpo.models.flux2.FLUX2_SAMPLING);
        # a klein folder gets its own (sampling_defaults with its path)
        {"steps": 50, "shift": 7.5636},
    ),
    "z-image": Backend(
        "z-image",
        "srpo.models.z_image",
        "ZImageGenerator",
        "Tongyi-MAI/Z-Image-Turbo",
        "ZImagePipeline",
        {"steps": 9, "shift": 3.0},
    ),
}


#: Every backend name, as ``--model`` and the training config take it.
MODEL_NAMES = tuple(BACKENDS)


def backend(name: str) -> Backend:
    """The backend called ``name`` (case-insensitive)."""
    try:
        return BACKENDS[name.lower()]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}"
        ) from None


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

    ``path``: a local folder or hub id in diffusers layout, or a tiny-world weights folder
    (``tiny``). ``precision``: ``fp32`` or ``bf16`` (:mod:`srpo.precision`); by default bf16 for
    the diffusers backends and fp32 for the tiny world. ``resolution`` (square) applies to the
    diffusers backends (the tiny world is 64 px); ``guidance`` to those with a guidance
    embedding (FLUX.1-dev, FLUX.2-dev); ``cfg_scale`` (true CFG, standard form) to all.
    """
    key = backend(name).name
    check_model_source(key, path)
    if key == "tiny":
        from srpo.models.tiny import load_tiny_generator
        from srpo.tiny_world.weights import WEIGHTS_DIR

        return load_tiny_generator(
            path or WEIGHTS_DIR, cfg_scale=cfg_scale, precision=precision or "fp32"
        )
    spec = BACKENDS[key]
    if resolution is not None:
        options["resolution"] = (resolution, resolution)
    if guidance is not None and key in ("flux", "flux2"):
        options["guidance"] = guidance
    generator = spec.load_class().from_pretrained(
        path or spec.hub_id, precision=precision or "bf16", **options
    )
    if cfg_scale is not None:
        generator.cfg_scale = float(cfg_scale)
    return generator


def sampling_defaults(name: str, path: str | None = None) -> dict[str, float]:
    """Euler steps and shift for sampling a backend (the tiny world ships its own)."""
    if name.lower() == "tiny":
        from srpo.models.tiny import sampling_defaults as tiny_defaults
        from srpo.tiny_world.weights import WEIGHTS_DIR

        return tiny_defaults(path or WEIGHTS_DIR)
    if name.lower() == "flux2" and path:
        from srpo.models.flux2 import flux2_variant

        return flux2_variant(path).sampling
    return dict(backend(name).sampling)


def diffusers_classes(name: str, path: str | None = None) -> dict[str, str]:
    """The diffusers pipeline and transformer classes of a backend and its model id (the
    folder's FLUX.2 variant decides between ``Flux2Pipeline`` and ``Flux2KleinPipeline``)."""
    from srpo.models.full_size import FULL_SIZE

    spec = backend(name)
    if spec.name == "tiny":
        raise ValueError("the tiny world is not a diffusers pipeline")
    pipeline = spec.pipeline
    if spec.name == "flux2" and path:
        from srpo.models.flux2 import flux2_variant

        pipeline = flux2_variant(path).pipeline
    return {
        "pipeline": pipeline,
        "transformer": FULL_SIZE[spec.name].cls,
        "model": path or str(spec.hub_id),
    }


def check_model_source(name: str, path: str | None) -> None:
    """Refuse, with one clear line, a local model folder that is missing or is not in
    diffusers layout (a hub id, with no path separator, is left to the hub)."""
    if path is None or name.lower() == "tiny":
        return
    folder = Path(path).expanduser()
    local = folder.is_absolute() or path.startswith((".", "~")) or path.count("/") != 1
    if not local and not folder.exists():
        return
    if not folder.is_dir():
        raise ValueError(f"model folder {path} does not exist")
    if not (folder / "transformer" / "config.json").is_file():
        raise ValueError(
            f"model folder {path} is not in diffusers layout (no transformer/config.json)"
        )


def describe_models() -> list[dict[str, object]]:
    """Every backend name with its class, hub id, pipeline and sampling defaults."""
    rows = [spec.describe() for spec in BACKENDS.values()]
    for row in rows:
        row["sampling"] = sampling_defaults(str(row["name"]))
    return rows


def generator_for(config: TrainConfig) -> Generator:
    """The generator a training config names, at its resolution, guidance, CFG and precision.

    ``cfg_scale`` 1 is CFG off on every diffusers backend (not the pipeline's default scale);
    only the tiny world keeps its manifest's scale there.
    """
    tiny = config.model == "tiny"
    return load_generator(
        config.model,
        config.model_path,
        precision=config.precision,
        resolution=None if tiny else config.resolution,
        guidance=config.train_guidance,
        cfg_scale=None if tiny and config.cfg_scale == 1.0 else config.cfg_scale,
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
    """The generator of a run with the checkpoint at ``path`` applied, and the run's config.

    It samples at the run's rollout CFG, as its sample grids were drawn (the official
    Qwen-Image run trains at CFG 1 and samples at 4, the base model's pipeline scale).
    """
    checkpoint, config = load_run_checkpoint(path)
    generator = generator_for(config)
    if config.rollout_cfg_scale is not None:
        generator.cfg_scale = float(config.rollout_cfg_scale)
    apply_checkpoint(generator, checkpoint, config)
    return generator, config
