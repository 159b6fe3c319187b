"""The validated training configuration (pydantic), read from and written to YAML.

Every field names its allowed range; errors say which field is wrong and why. Presets give
the paper's FLUX.1-dev recipe (method.md) and the tiny-world demo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from srpo.direct_align import check_sigma_range

Method = Literal["srpo", "direct_align", "refl", "draft", "grpo"]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]


class ConfigError(ValueError):
    """An invalid training configuration; the message names every bad field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Discount(Strict):
    """``k(s)`` from the clean end (sigma 0) to the noisy end (sigma 1)."""

    clean: float = Field(ge=0.0, le=10.0)
    noisy: float = Field(ge=0.0, le=10.0)


class Optimizer(Strict):
    """AdamW settings (paper: lr 5e-6, weight decay 1e-4, grad clip 0.1, constant lr)."""

    lr: float = Field(5e-6, gt=0.0, le=1.0)
    weight_decay: float = Field(1e-4, ge=0.0, le=1.0)
    betas: tuple[
        Annotated[float, Field(ge=0.0, lt=1.0)], Annotated[float, Field(ge=0.0, lt=1.0)]
    ] = (
        0.9,
        0.999,
    )
    grad_clip: float = Field(0.1, gt=0.0, le=1000.0)


class LoRA(Strict):
    """Low-rank adapters on the transformer's attention projections."""

    rank: int = Field(16, ge=1, le=1024)
    alpha: float = Field(16.0, gt=0.0, le=4096.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"], min_length=1
    )


class Baselines(Strict):
    """Settings of the comparison methods, at their authors' defaults.

    A ``*_steps`` of None means the trainer's ``rollout_steps``; every method samples with the
    trainer's ``shift`` (3 in the FLUX presets, DanceGRPO's ``--shift 3``).
    """

    # ReFL (THUDM/ImageReward, ImageReward/ReFL.py): set_timesteps(40), stop step
    # random.randint(30, 39), i.e. the last quarter; loss relu(2 - r) * grad_scale 1e-3.
    refl_steps: int | None = Field(40, ge=2, le=1000)
    refl_stop_fraction: tuple[Unit, Unit] = (0.75, 1.0)
    refl_threshold: float = Field(2.0, ge=-100.0, le=100.0)
    refl_grad_scale: float = Field(1e-3, gt=0.0, le=1.0)
    # DRaFT (Clark et al. 2023, arXiv 2309.17400): 50 sampling steps, DRaFT-LV = K 1 with
    # n = 2 extra noise-and-denoise copies of the last step; set draft_lv_samples 0 for DRaFT-K.
    draft_steps: int | None = Field(50, ge=1, le=1000)
    draft_k: int = Field(1, ge=1, le=50)
    draft_lv_samples: int = Field(2, ge=0, le=16)
    # DanceGRPO (XueZeyue/DanceGRPO, scripts/finetune/finetune_flux_grpo.sh with
    # fastvideo/train_grpo_flux.py): --sampling_steps 16 --eta 0.3 --num_generations 12
    # --timestep_fraction 0.6 --clip_range 1e-4 --adv_clip_max 5.0 --init_same_noise
    # --gradient_accumulation_steps 4 (samples per optimizer step, train_batch_size 1).
    grpo_steps: int | None = Field(16, ge=2, le=1000)
    grpo_group_size: int = Field(12, ge=2, le=64)
    grpo_eta: float = Field(0.3, gt=0.0, le=2.0)
    grpo_timestep_fraction: float = Field(0.6, gt=0.0, le=1.0)
    grpo_clip: float = Field(1e-4, gt=0.0, le=1.0)
    grpo_adv_clip: float = Field(5.0, gt=0.0, le=100.0)
    grpo_init_same_noise: bool = True
    grpo_samples_per_step: int = Field(4, ge=1, le=1024)

    @model_validator(mode="after")
    def _consistent(self) -> Baselines:
        low, high = self.refl_stop_fraction
        if not low < high:
            raise ValueError(
                f"refl_stop_fraction must be (low, high) with low < high, got {(low, high)}"
            )
        if self.refl_steps is not None:
            from srpo.baselines.refl import refl_stop_range

            refl_stop_range(self.refl_steps, (low, high))
        if self.draft_lv_samples and self.draft_k != 1:
            raise ValueError(
                f"draft_lv_samples: DRaFT-LV is defined for draft_k 1, got draft_k {self.draft_k}"
            )
        if self.draft_steps is not None and self.draft_k > self.draft_steps:
            raise ValueError(f"draft_k {self.draft_k} exceeds draft_steps {self.draft_steps}")
        return self


class TrainConfig(Strict):
    """Everything one fine-tune needs; ``steps`` counts optimiser updates."""

    model: str = Field("tiny", min_length=1)
    model_path: str | None = None
    reward: str = Field("tiny", min_length=1)
    reward_path: str | None = None
    method: Method = "srpo"

    prompts: list[Annotated[str, Field(min_length=1)]] | None = None
    prompts_file: str | None = None
    positive_words: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    negative_words: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    word_mode: Literal["cycle", "sample"] = "cycle"

    discount_denoise: Discount = Discount(clean=0.1, noisy=0.25)
    discount_inversion: Discount = Discount(clean=0.3, noisy=0.01)
    inversion: bool = True
    sigma_range: tuple[Unit, Unit] = (0.75, 0.96)
    sigma_sampling: Literal["sigma", "index"] = "sigma"
    d: float = Field(0.022, gt=0.0, lt=0.5)
    loss: Literal["negative", "hinge"] = "negative"
    threshold: float = Field(0.0, ge=-100.0, le=100.0)

    resolution: int = Field(64, ge=16, le=4096)
    rollout_steps: int = Field(25, ge=1, le=200)
    shift: float = Field(3.0, gt=0.0, le=20.0)
    guidance: float = Field(3.5, ge=0.0, le=30.0)
    cfg_scale: float = Field(1.0, ge=1.0, le=30.0)
    offline_images: str | None = None

    optimizer: Optimizer = Optimizer()
    batch_size: int = Field(1, ge=1, le=1024)
    gradient_accumulation: int = Field(1, ge=1, le=1024)
    steps: int = Field(20, ge=1, le=1_000_000)
    lora: LoRA | None = None
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    gradient_checkpointing: bool = False
    seed: int = Field(0, ge=0, le=2**31 - 1)

    checkpoint_every: int = Field(10, ge=1, le=1_000_000)
    sample_every: int = Field(0, ge=0, le=1_000_000)
    eval_prompts: list[str] = Field(default_factory=list)
    eval_seeds: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0, 1, 2, 3])
    tensorboard: bool = False
    baselines: Baselines = Baselines()

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if (self.prompts is None) == (self.prompts_file is None):
            raise ValueError("give exactly one of prompts (a list) or prompts_file (a path)")
        if self.prompts is not None and not self.prompts:
            raise ValueError("prompts: the list is empty")
        check_sigma_range(tuple(self.sigma_range), self.d)
        if self.method == "srpo" and not (self.positive_words and self.negative_words):
            raise ValueError(
                "method srpo needs positive_words and negative_words (at least one each)"
            )
        if self.method == "direct_align" and self.inversion:
            raise ValueError(
                "inversion: the inversion branch scores with swapped control words, so it "
                "needs method srpo; set inversion: false for direct_align"
            )
        low, high = self.baselines.refl_stop_fraction
        if low > high:
            raise ValueError(
                f"baselines.refl_stop_fraction must be (low, high) with low <= high, got {(low, high)}"
            )
        return self

    def prompt_list(self, base: Path | None = None) -> list[str]:
        """The training prompts (from the list or the UTF-8 file, one per line)."""
        if self.prompts is not None:
            return list(self.prompts)
        return read_prompts_file(Path(base or ".") / self.prompts_file)

    def to_yaml(self) -> str:
        """The config as YAML (round-trips through :func:`load_config`)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def read_prompts_file(path: Path) -> list[str]:
    """Prompts from a UTF-8 text file, one per non-empty line."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"prompts_file: {path} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"prompts_file: {path} is not UTF-8 text") from None
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise ConfigError(f"prompts_file: {path} holds no prompts")
    return prompts


def _format(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "config"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return "invalid training config: " + "; ".join(lines)


def make_config(data: dict[str, Any]) -> TrainConfig:
    """Validate a dict into a config, raising :class:`ConfigError` naming each bad field."""
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format(error)) from None


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a YAML config file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of fields")
    return make_config(data)


TINY_PROMPTS = [
    "a red circle on a gray background",
    "a small blue square",
    "a large yellow triangle on a black background",
    "a green diamond on a white background",
    "a large red square",
    "a small green circle on a black background",
    "a blue triangle on a gray background",
    "a yellow diamond",
]

# FLUX.1-dev with HPSv2.1 at 720 px, 25 rollout steps, shift 3 (method.md).
FLUX_PAPER_SETUP: dict[str, Any] = {
    "model": "flux",
    "model_path": "black-forest-labs/FLUX.1-dev",
    "reward": "hpsv2.1",
    "method": "srpo",
    "prompts_file": "prompts.txt",
    "positive_words": ["Realistic photo"],
    "negative_words": ["CG Render"],
    "resolution": 720,
    "rollout_steps": 25,
    "shift": 3.0,
    "guidance": 3.5,
    "mixed_precision": "bf16",
    "gradient_checkpointing": True,
}

PRESETS: dict[str, dict[str, Any]] = {
    "tiny-demo": {
        "model": "tiny",
        "reward": "tiny",
        "method": "srpo",
        "prompts": TINY_PROMPTS,
        "positive_words": ["photo"],
        "negative_words": ["painting"],
        "resolution": 64,
        "rollout_steps": 20,
        "shift": 1.0,
        "sigma_range": [0.5, 0.95],
        "d": 0.04,
        "optimizer": {"lr": 3e-5, "weight_decay": 1e-4, "grad_clip": 1.0},
        "batch_size": 8,
        "steps": 40,
        "checkpoint_every": 10,
        "eval_prompts": TINY_PROMPTS[:4],
    },
    "flux-lora-1gpu": {
        **FLUX_PAPER_SETUP,
        "optimizer": {"lr": 1e-4, "weight_decay": 1e-4, "grad_clip": 0.1},
        "lora": {"rank": 64, "alpha": 64},
        "steps": 100,
    },
    "flux-paper-32gpu": {
        **FLUX_PAPER_SETUP,
        "sigma_range": [0.75, 0.96],
        "d": 0.022,
        "optimizer": {"lr": 5e-6, "weight_decay": 1e-4, "grad_clip": 0.1},
        "batch_size": 1,
        "steps": 20,
    },
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """A named preset (``tiny-demo``, ``flux-lora-1gpu``, ``flux-paper-32gpu``) with overrides."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return make_config({**PRESETS[name], **overrides})
