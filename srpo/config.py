"""The validated training configuration (pydantic), read from and written to YAML.

Top-level fields say what to train, on what, and how the loop runs; one section per method
holds that method's own settings (trl-style): ``direct_align`` (Direct-Align and SRPO), then
``refl``, ``draft`` and ``grpo``, each defined beside its update. Every field names its
allowed range; errors say which field is wrong and why. Presets give the paper's FLUX.1-dev
recipe (method.md) and the tiny-world demo; :func:`preset` deep-merges overrides into one.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from srpo.baselines import DRaFTConfig, GRPOConfig, ReFLConfig
from srpo.direct_align import DirectAlignConfig
from srpo.methods import METHODS
from srpo.precision import Precision
from srpo.section import Section

Method = Literal["srpo", "direct_align", "refl", "draft", "grpo"]


class ConfigError(ValueError):
    """An invalid training configuration; the message names every bad field."""


class Optimizer(Section):
    """AdamW settings; ``None`` takes the method's authors' default (:mod:`srpo.methods`).

    SRPO's (paper): lr 5e-6, weight decay 1e-4, grad clip 0.1, constant lr.
    """

    lr: float | None = Field(None, gt=0.0, le=1.0)
    weight_decay: float | None = Field(None, ge=0.0, le=1.0)
    betas: tuple[
        Annotated[float, Field(ge=0.0, lt=1.0)], Annotated[float, Field(ge=0.0, lt=1.0)]
    ] = (
        0.9,
        0.999,
    )
    grad_clip: float | None = Field(None, gt=0.0, le=1000.0)


class LoRA(Section):
    """Low-rank adapters on the transformer's attention projections."""

    rank: int = Field(16, ge=1, le=1024)
    alpha: float = Field(16.0, gt=0.0, le=4096.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"], min_length=1
    )


class TrainConfig(Section):
    """Everything one fine-tune needs; ``steps`` counts optimiser updates.

    ``train_guidance`` is the guidance embedding of the forwards that carry gradient (and of
    the baselines' whole chains); ``rollout_guidance`` that of Direct-Align's clean-latent
    rollout (official: 1 with HPS, 2 with PickScore, training at 3.5), ``None`` = the same.
    ``cfg_scale`` is true classifier-free guidance in the standard form ``u + s (c - u)`` (off
    at 1) of the forwards that carry gradient; ``rollout_cfg_scale`` that of Direct-Align's
    rollout, the sample grids and a loaded checkpoint (the official Qwen-Image run: 4, training
    at 1), ``None`` = the same. The tiny world at ``cfg_scale`` 1 keeps its manifest's scale.
    ``reward_prefix`` makes the absolute-reward methods score ``r("<prefix>. p")`` instead of
    the raw prompt. An offline image without a caption trains on the empty prompt, unless
    ``offline_captions`` is ``required``. ``monitor_reward`` watches the run at every sample
    step (:mod:`srpo.monitor`; by default PickScore when training on HPS, HPS when training on
    PickScore, CLIP otherwise; the judge on the tiny world).

    ``launcher`` says where a studio job runs: ``local`` (``accelerate launch`` over one node's
    devices) or ``ray`` (a Ray Train job of ``num_workers`` workers over a Ray cluster's nodes;
    ``nodes`` = ``num_workers`` puts one worker on each node). ``srpo train`` ignores them.
    """

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
    reward_prefix: str | None = Field(None, min_length=1)

    resolution: int = Field(64, ge=16, le=4096)
    rollout_steps: int = Field(25, ge=1, le=200)
    shift: float = Field(3.0, gt=0.0, le=20.0)
    train_guidance: float = Field(3.5, ge=0.0, le=30.0)
    rollout_guidance: float | None = Field(None, ge=0.0, le=30.0)
    cfg_scale: float = Field(1.0, ge=1.0, le=30.0)
    rollout_cfg_scale: float | None = Field(None, ge=1.0, le=30.0)
    offline_images: str | None = None
    offline_captions: Literal["empty", "required"] = "empty"

    precision: Literal["fp32", "bf16"] = "fp32"
    optimizer: Optimizer = Optimizer()
    batch_size: int = Field(1, ge=1, le=1024)
    gradient_accumulation: int = Field(1, ge=1, le=1024)
    steps: int = Field(20, ge=1, le=1_000_000)
    lora: LoRA | None = None
    gradient_checkpointing: bool = False
    seed: int = Field(0, ge=0, le=2**31 - 1)

    checkpoint_every: int = Field(10, ge=1, le=1_000_000)
    # An fsspec URL every node reaches: each checkpoint is copied there, and a run whose
    # output lacks the newest one fetches it (srpo.checkpoint_store).
    checkpoint_url: str | None = Field(None, min_length=1, max_length=1000)
    sample_every: int = Field(0, ge=0, le=1_000_000)
    # Rendered at every sample step (and by the hacking monitor): bounded so that cost is.
    eval_prompts: list[Annotated[str, Field(min_length=1, max_length=1000)]] = Field(
        default_factory=list, max_length=64
    )
    eval_seeds: list[Annotated[int, Field(ge=0, le=2**31 - 1)]] = Field(
        default_factory=lambda: [0, 1, 2, 3], min_length=1, max_length=64
    )
    tensorboard: bool = False
    monitor_reward: str | None = Field(None, min_length=1)
    monitor_reward_path: str | None = None

    launcher: Literal["local", "ray"] = "local"
    num_workers: int | None = Field(None, ge=1, le=4096)
    nodes: int | None = Field(None, ge=1, le=1024)

    direct_align: DirectAlignConfig = DirectAlignConfig()
    refl: ReFLConfig = ReFLConfig()
    draft: DRaFTConfig = DRaFTConfig()
    grpo: GRPOConfig = GRPOConfig()

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if (self.prompts is None) == (self.prompts_file is None):
            raise ValueError("give exactly one of prompts (a list) or prompts_file (a path)")
        if self.prompts is not None and not self.prompts:
            raise ValueError("prompts: the list is empty")
        if self.method == "srpo" and not (self.positive_words and self.negative_words):
            raise ValueError(
                "method srpo needs positive_words and negative_words (at least one each)"
            )
        if self.nodes is not None and self.launcher != "ray":
            raise ValueError("nodes: only the ray launcher spans nodes; set launcher: ray")
        if self.nodes is not None and (self.num_workers or 1) % self.nodes:
            raise ValueError("nodes: num_workers must be a multiple of nodes")
        if self.monitor_reward is not None and self.model != "tiny":
            from srpo.monitor import monitor_reward_problem

            problem = monitor_reward_problem(self.reward, self.monitor_reward)
            if problem:
                raise ValueError(problem)
        if self.method == "direct_align" and self.direct_align.inversion:
            raise ValueError(
                "direct_align.inversion: the inversion branch scores with swapped control "
                "words, so it needs method srpo; set direct_align.inversion: false"
            )
        return self

    @property
    def effective_rollout_guidance(self) -> float:
        """The rollout's guidance: ``rollout_guidance``, or ``train_guidance`` when unset."""
        return self.train_guidance if self.rollout_guidance is None else self.rollout_guidance

    @property
    def effective_rollout_cfg_scale(self) -> float:
        """The rollout's CFG: ``rollout_cfg_scale``, or ``cfg_scale`` when unset."""
        return self.cfg_scale if self.rollout_cfg_scale is None else self.rollout_cfg_scale

    @property
    def precision_policy(self) -> Precision:
        """The dtypes of every part of the run."""
        return Precision.of(self.precision)

    def adamw(self) -> dict[str, Any]:
        """AdamW settings with the method's authors' defaults filled in where unset."""
        defaults = METHODS[self.method].optimizer
        settings = self.optimizer
        return {
            "lr": defaults.lr if settings.lr is None else settings.lr,
            "weight_decay": (
                defaults.weight_decay if settings.weight_decay is None else settings.weight_decay
            ),
            "betas": tuple(settings.betas),
            "grad_clip": defaults.grad_clip if settings.grad_clip is None else settings.grad_clip,
        }

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


LEGACY_DIRECT_ALIGN = ("sigma_range", "sigma_sampling", "d", "inversion", "loss", "threshold")
LEGACY_KEYS = (
    *LEGACY_DIRECT_ALIGN,
    "discount_denoise",
    "discount_inversion",
    "mixed_precision",
    "guidance",
    "baselines",
)


def upgrade_legacy(data: dict[str, Any]) -> dict[str, Any]:
    """A config written before the per-method sections (a stored job, an old YAML file) in
    today's layout, meaning the same run: Direct-Align keys move into ``direct_align``, a
    discount over sigma 0..1 (``clean``/``noisy``) becomes the same line's values at the
    window's ends, ``baselines.refl_steps`` becomes ``refl.steps`` and so on."""
    if not any(key in data for key in LEGACY_KEYS):
        return data
    data = copy.deepcopy(data)
    section = data.setdefault("direct_align", {})
    if not isinstance(section, dict):
        return data
    for key in LEGACY_DIRECT_ALIGN:
        if key in data:
            section[key] = data.pop(key)
    low, high = section.get("sigma_range", DirectAlignConfig().sigma_range)
    for key in ("discount_denoise", "discount_inversion"):
        old = data.pop(key, None)
        if isinstance(old, dict) and {"clean", "noisy"} <= old.keys():
            clean, noisy = float(old["clean"]), float(old["noisy"])
            section[key] = {
                "low": clean + (noisy - clean) * low,
                "high": clean + (noisy - clean) * high,
            }
        elif old is not None:
            section[key] = old
    if "mixed_precision" in data:
        data["precision"] = "fp32" if data.pop("mixed_precision") == "no" else "bf16"
    if "guidance" in data:
        data["train_guidance"] = data.pop("guidance")
    baselines = data.pop("baselines", None)
    if isinstance(baselines, dict):
        for key, value in baselines.items():
            method, _, field = key.partition("_")
            data.setdefault(method, {})[field] = value
    return data


def make_config(data: dict[str, Any]) -> TrainConfig:
    """Validate a dict into a config, raising :class:`ConfigError` naming each bad field.

    Configs in the layout before the per-method sections are upgraded first
    (:func:`upgrade_legacy`), so stored jobs and old YAML files keep working.
    """
    try:
        return TrainConfig.model_validate(upgrade_legacy(data))
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

# The official control words, cycled by step (Tencent-Hunyuan/SRPO fastvideo/SRPO.py,
# get_random_realism_adjective / get_random_cg_oily_adjective). "Realistic photo" / "CG Render"
# are SGP-HPS's evaluation words, so training on them would make that evaluation circular.
OFFICIAL_POSITIVE_WORDS = ["Natural-lighting", "Detail", "Detailed", "Real"]
OFFICIAL_NEGATIVE_WORDS = ["Concept art", "Painting", "Anime", "Flat", "Oil"]

# FLUX.1-dev with HPSv2.1 at 720 px, 25 rollout steps, shift 3, bf16 (method.md): the rollout
# at guidance 1 (SRPO_training_hpsv2.sh --train_guidence 1), the gradient forward at 3.5.
FLUX_PAPER_SETUP: dict[str, Any] = {
    "model": "flux",
    "model_path": "black-forest-labs/FLUX.1-dev",
    "reward": "hpsv2.1",
    "method": "srpo",
    "prompts_file": "prompts.txt",
    "positive_words": OFFICIAL_POSITIVE_WORDS,
    "negative_words": OFFICIAL_NEGATIVE_WORDS,
    "resolution": 720,
    "rollout_steps": 25,
    "shift": 3.0,
    "train_guidance": 3.5,
    "rollout_guidance": 1.0,
    "precision": "bf16",
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
        "direct_align": {"sigma_range": [0.5, 0.95], "d": 0.04},
        "optimizer": {"lr": 3e-5, "weight_decay": 1e-4, "grad_clip": 1.0},
        "batch_size": 8,
        "steps": 40,
        "checkpoint_every": 10,
        "sample_every": 10,
        "eval_prompts": TINY_PROMPTS[:4],
    },
    "flux-lora-1gpu": {
        **FLUX_PAPER_SETUP,
        "optimizer": {"lr": 1e-4},
        "lora": {"rank": 64, "alpha": 64},
        "steps": 100,
    },
    "flux-paper-32gpu": {
        **FLUX_PAPER_SETUP,
        "direct_align": {"sigma_range": [0.75, 0.96], "d": 0.022},
        "batch_size": 1,
        "steps": 20,
        # The paper's 32 GPUs (4 nodes of 8), as a Ray Train job over the studio's Ray cluster.
        "launcher": "ray",
        "num_workers": 32,
    },
    # SRPO_training_ps.sh: PickScore rolls out at guidance 2 with a stronger discount.
    "flux-paper-pickscore": {
        **FLUX_PAPER_SETUP,
        "reward": "pickscore",
        "rollout_guidance": 2.0,
        "direct_align": {
            "sigma_range": [0.75, 0.96],
            "d": 0.022,
            "discount_denoise": {"low": 0.1, "high": 0.5},
            "discount_inversion": {"low": 0.6, "high": 0.01},
        },
        "batch_size": 1,
        "steps": 20,
    },
}

# The official Qwen-Image run (Tencent-Hunyuan/SRPO scripts/finetune/SRPO_training_qwen.sh and
# fastvideo/SRPO_Qwen.py): PickScore, 720 px, 26 rollout steps at shift 1 and CFG 4 (norm
# rescaled), the gradient forward without CFG (train_cfg 1), lr 3e-6, weight decay 1e-4, grad
# clip 50, batch 1 x 2 accumulated, bf16, checkpointing, FSDP full shard; the denoise branch
# only with SRP k = 0 ((1 + 0) r(pos. p) - r(neg. p)) and three negative words. Its s* runs over
# 100 levels from sigma 0.9 to 0.2 (train_timestep 5..40 of 50 at shift 1) with a slice of 41
# levels (0.29) clamped at the ends (k = min(k, index, 100 - index)): slice_clamp over 0.2..0.9.
# The loss maximises discount[index] * SRP / 20, discount = sd3_time_shift(3, linspace(0, 1)):
# the reward multiplier at scale 0.05, shift 3. Where we differ we keep QwenImagePipeline's
# behaviour over the script's quirks: CFG against " " with its own mask (theirs: "" under the
# prompt's mask), decodes clamped to [0, 1] (theirs min-max rescale each image), s* uniform in
# the window, and one slice clamp per draw (theirs carries the first micro-batch's to the next).
QWEN_IMAGE_SRPO: dict[str, Any] = {
    "model": "qwen-image",
    "reward": "pickscore",
    "method": "srpo",
    "prompts_file": "prompts.txt",
    "positive_words": ["Natural-lighting", "Detail", "Detailed", "Real"],
    "negative_words": ["Concept art", "Painting", "Anime"],
    "resolution": 720,
    "rollout_steps": 26,
    "shift": 1.0,
    "cfg_scale": 1.0,
    "rollout_cfg_scale": 4.0,
    "direct_align": {
        "sigma_range": [0.2, 0.9],
        "d": 0.29,
        "slice_clamp": True,
        "discount_denoise": {"low": 0.0, "high": 0.0},
        "inversion": False,
        "reward_multiplier": {"scale": 0.05, "shift": 3.0},
    },
    "optimizer": {"lr": 3e-6, "weight_decay": 1e-4, "grad_clip": 50.0},
    "batch_size": 1,
    "gradient_accumulation": 2,
    "precision": "bf16",
    "gradient_checkpointing": True,
    "steps": 50,
    "checkpoint_every": 50,
}


def _backend_setup(model: str, resolution: int, steps: int, shift: float) -> dict[str, Any]:
    """The FLUX.1 paper's SRPO recipe on another backend at its own sampler (no author run)."""
    return {
        **FLUX_PAPER_SETUP,
        "model": model,
        "model_path": None,
        "resolution": resolution,
        "rollout_steps": steps,
        "shift": shift,
        "rollout_guidance": None,
    }


# sd3: SD3.5-medium's 40 steps at shift 3 and CFG 4.5 (its model card's); z-image: Turbo's 9 steps at shift 3; flux2: dev's
# 50 steps at its 1024 px shift 7.56 (srpo.models.loader.BACKENDS), guidance 4 embedded.
_SD3 = _backend_setup("sd3", 1024, 40, 3.0) | {"cfg_scale": 4.5}
_Z_IMAGE = _backend_setup("z-image", 1024, 9, 3.0)
_FLUX2 = _backend_setup("flux2", 1024, 50, 7.5636) | {"train_guidance": 4.0}
_LORA = {"optimizer": {"lr": 1e-4}, "lora": {"rank": 64, "alpha": 64}, "steps": 100}
# FLUX.2's single-stream blocks fuse q, k, v and the MLP input in one projection.
_FLUX2_LORA = {
    **_LORA,
    "lora": {
        "rank": 64,
        "alpha": 64,
        "target_modules": ["to_q", "to_k", "to_v", "to_out.0", "to_qkv_mlp_proj"],
    },
}
_FULL = {"direct_align": {"sigma_range": [0.75, 0.96], "d": 0.022}, "steps": 20}

PRESETS |= {
    "qwen-image-lora-1gpu": {
        **QWEN_IMAGE_SRPO,
        **_LORA,
        "optimizer": {"lr": 1e-4, "weight_decay": 1e-4, "grad_clip": 50.0},
    },
    "qwen-image-official-32gpu": QWEN_IMAGE_SRPO,
    "sd3-lora-1gpu": {**_SD3, **_LORA},
    "sd3-full-8gpu": {**_SD3, **_FULL},
    "z-image-lora-1gpu": {**_Z_IMAGE, **_LORA},
    "z-image-full-8gpu": {**_Z_IMAGE, **_FULL},
    "flux2-lora-1gpu": {**_FLUX2, **_FLUX2_LORA},
    "flux2-full-32gpu": {**_FLUX2, **_FULL},
}
#: The GPUs each preset is written for (``srpo explain`` plans memory per GPU with them).
PRESET_GPUS: dict[str, int] = {
    "flux-paper-32gpu": 32,
    "flux-paper-pickscore": 32,
    "qwen-image-official-32gpu": 32,
    "sd3-full-8gpu": 8,
    "z-image-full-8gpu": 8,
    "flux2-full-32gpu": 32,
}


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied key by key, recursing into nested mappings."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def preset(name: str, **overrides: Any) -> TrainConfig:
    """A named preset with ``overrides`` deep-merged in (``optimizer={"lr": 1e-5}`` keeps the
    preset's other optimiser settings)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return make_config(deep_merge(PRESETS[name], overrides))
