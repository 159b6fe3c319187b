"""The fine-tuning loop: one readable pass from config to checkpoints, on accelerate.

Per update and per micro-batch: pick this rank's prompts, draw the noise prior (the same on
every rank, as in the paper), get a clean latent (a rollout of the current model without
gradients, or an encoded real image in offline mode), draw ``s*``, compute the method's
objective, backpropagate. Every random draw is derived from ``(seed, step)``, so a resumed run
repeats exactly what an uninterrupted one would do. Callbacks run on the main process only.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from srpo import __version__
from srpo.baselines import UpdateStats, baseline_update
from srpo.checkpoints import Checkpoint, latest_checkpoint, load_checkpoint, save_checkpoint
from srpo.config import LoRA, TrainConfig
from srpo.direct_align import (
    DirectAlignSettings,
    Discount,
    sample_target_sigma,
    srpo_objective,
)
from srpo.models import load_generator
from srpo.models.base import Generator
from srpo.offline import OfflinePool, encode_pool, read_image_folder
from srpo.rewards import load_reward
from srpo.rewards.base import TextImageReward
from srpo.rewards.srp import ControlWords, augment
from srpo.sampling import labelled_grid, sample_images

Backward = Callable[[torch.Tensor], None]


@dataclass(frozen=True)
class Progress:
    """What a progress callback receives after each update."""

    step: int
    total: int
    loss: float
    reward_mean: float
    reward_std: float
    grad_norm: float
    seconds_per_step: float
    eta_seconds: float


@dataclass(frozen=True)
class Samples:
    """Images of the fixed evaluation prompts and seeds at one step (step 0: the base model)."""

    step: int
    images: torch.Tensor
    prompts: list[str]
    seeds: list[int]
    path: Path


class Callback:
    """Hooks the trainer calls on the main process; override what you need."""

    def on_progress(self, progress: Progress) -> None:
        """After every update."""

    def on_samples(self, samples: Samples) -> None:
        """After the evaluation grid of a step is rendered and saved."""

    def on_checkpoint(self, checkpoint: Checkpoint) -> None:
        """After a checkpoint is complete on disk."""

    def should_cancel(self) -> bool:
        """Checked before every update; True saves a checkpoint and stops (all ranks)."""
        return False


@dataclass(frozen=True)
class TrainResult:
    """How a run ended."""

    step: int
    cancelled: bool
    checkpoint: Checkpoint | None


@dataclass(frozen=True)
class Draw:
    """The random choices of one micro-batch on one rank."""

    prompts: list[str]
    rank: random.Random
    shared: torch.Generator


def build_generator(config: TrainConfig) -> Generator:
    """The generator a config names, at its resolution and guidance."""
    options = {}
    if config.model == "flux":
        options = {
            "resolution": (config.resolution, config.resolution),
            "guidance": config.guidance,
        }
    generator = load_generator(config.model, config.model_path, **options)
    if config.cfg_scale != 1.0:
        generator.cfg_scale = config.cfg_scale
    return generator


def build_models(config: TrainConfig) -> tuple[Generator, TextImageReward]:
    """The generator and frozen reward a config names."""
    return build_generator(config), load_reward(config.reward, config.reward_path)


def add_lora(transformer: torch.nn.Module, lora: LoRA) -> None:
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


def prepare_trainable(generator: Generator, config: TrainConfig) -> list[torch.nn.Parameter]:
    """Add LoRA adapters (or unfreeze everything) and return the trainable parameters."""
    transformer = generator.transformer
    transformer.requires_grad_(config.lora is None)
    if config.lora is not None:
        add_lora(transformer, config.lora)
    if config.gradient_checkpointing:
        generator.enable_gradient_checkpointing(True)
    transformer.train()
    return [p for p in transformer.parameters() if p.requires_grad]


def draw(config: TrainConfig, step: int, micro: int, rank: int, prompts: Sequence[str]) -> Draw:
    """This rank's prompts and random source, and the torch generator shared by all ranks."""
    pick = random.Random(hash((config.seed, step, micro, rank)) & 0xFFFFFFFF)
    batch = [pick.choice(prompts) for _ in range(config.batch_size)]
    shared = torch.Generator().manual_seed((config.seed * 1_000_003 + step * 1009 + micro) % 2**63)
    return Draw(batch, pick, shared)


def reward_texts(config: TrainConfig, prompts: Sequence[str], step: int) -> list[str]:
    """What the reward scores against for methods without the relative term.

    With positive control words, each prompt is augmented with one (cycled per step), the
    paper's prompt augmentation without the negative condition; otherwise the prompt itself.
    """
    if not config.positive_words:
        return list(prompts)
    return augment(config.positive_words[step % len(config.positive_words)], prompts)


class DirectAlignUpdate:
    """One SRPO / Direct-Align micro-batch: clean latent, noise prior, ``s*``, both branches."""

    def __init__(
        self,
        config: TrainConfig,
        generator: Generator,
        reward: TextImageReward,
        pool: OfflinePool | None,
    ) -> None:
        self.config, self.generator, self.reward, self.pool = config, generator, reward, pool
        self.words = None
        if config.method == "srpo":
            self.words = ControlWords.of(
                config.positive_words, config.negative_words, config.word_mode
            )
        self.settings = DirectAlignSettings(
            d=config.d,
            discount_denoise=Discount(**config.discount_denoise.model_dump()),
            discount_inversion=Discount(**config.discount_inversion.model_dump()),
            inversion=config.inversion,
            loss=config.loss,
            threshold=config.threshold,
        )

    def clean_latents(self, draw: Draw) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """``(x0, eps, prompts)``: a rollout from the shared noise, or real images + fresh noise."""
        cfg, generator = self.config, self.generator
        eps = generator.noise(cfg.batch_size, draw.shared)
        if self.pool is None:
            cond = generator.encode_prompts(draw.prompts)
            return generator.sample(cond, eps, cfg.rollout_steps, cfg.shift), eps, draw.prompts
        index = [draw.rank.randrange(len(self.pool)) for _ in range(cfg.batch_size)]
        captions = [self.pool.captions[i] or p for i, p in zip(index, draw.prompts, strict=True)]
        return self.pool.latents[index].to(eps), eps, captions

    def __call__(self, step: int, draw: Draw, backward: Backward) -> UpdateStats:
        cfg, generator = self.config, self.generator
        x0, eps, prompts = self.clean_latents(draw)
        cond = generator.encode_prompts(prompts)
        s_star = sample_target_sigma(
            cfg.batch_size,
            tuple(cfg.sigma_range),
            cfg.d,
            cfg.sigma_sampling,
            cfg.rollout_steps,
            cfg.shift,
            generator=draw.shared,
        ).to(x0.device)
        pair = self.words.pick(step, cfg.seed) if self.words else None
        texts = prompts if pair else reward_texts(cfg, prompts, step)
        objective = srpo_objective(
            generator, self.reward, x0, eps, cond, texts, s_star, self.settings, pair
        )
        backward(objective.loss)
        return UpdateStats(objective.loss.item(), objective.rewards["denoise"].float().cpu())


def make_update(
    config: TrainConfig,
    generator: Generator,
    reward: TextImageReward,
    pool: OfflinePool | None,
    optimizer_step: Callable[[], None],
) -> Callable[[int, Draw, Backward], UpdateStats]:
    """The per-micro-batch update of ``config.method``.

    GRPO draws its noise per rank (DanceGRPO seeds each rank apart) and takes DanceGRPO's
    intermediate optimiser steps within a rollout through ``optimizer_step``.
    """
    if config.method in ("srpo", "direct_align"):
        return DirectAlignUpdate(config, generator, reward, pool)

    def baseline(step: int, draw: Draw, backward: Backward) -> UpdateStats:
        grpo = config.method == "grpo"
        rng = torch.Generator().manual_seed(draw.rank.getrandbits(63)) if grpo else draw.shared
        return baseline_update(
            config.method,
            generator,
            reward,
            draw.prompts,
            reward_texts(config, draw.prompts, step),
            config.baselines,
            config.rollout_steps,
            config.shift,
            rng,
            backward,
            optimizer_step=optimizer_step if grpo else None,
        )

    return baseline


def load_offline_pool(config: TrainConfig, generator: Generator, base: Path | None):
    """The encoded real images of offline mode, or None for rollouts."""
    if config.offline_images is None:
        return None
    folder = Path(base or ".") / config.offline_images
    pixels, captions = read_image_folder(folder, generator.resolution)
    return encode_pool(generator, pixels, captions)


def render_samples(generator: Generator, config: TrainConfig, prompts: Sequence[str]):
    """The fixed-seed evaluation images ``[P*S, 3, H, W]`` with their prompts and seeds."""
    chosen = list(config.eval_prompts or prompts[:4])
    pairs = [(p, s) for p in chosen for s in config.eval_seeds]
    texts, seeds = [p for p, _ in pairs], [s for _, s in pairs]
    images = sample_images(generator, texts, seeds, config.rollout_steps, config.shift)
    return images, texts, seeds


def train(
    config: TrainConfig,
    output: str | Path,
    callbacks: Sequence[Callback] = (),
    config_dir: str | Path | None = None,
    show_progress: bool = False,
) -> TrainResult:
    """Fine-tune as ``config`` says, checkpointing into ``output``; resumes if it can."""
    from accelerate import Accelerator
    from accelerate.utils import broadcast
    from tqdm.auto import tqdm

    base = Path(config_dir) if config_dir else None
    prompts = config.prompt_list(base)
    output = Path(output)
    # Without ``cpu=True`` accelerate ignores a multi-process launch on a machine without
    # GPUs and every process would train alone on rank 0's data.
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation,
        log_with="tensorboard" if config.tensorboard else None,
        project_dir=str(output),
    )
    main = accelerator.is_main_process
    torch.manual_seed(config.seed)
    generator, reward = build_models(config)
    reward.to(accelerator.device)
    generator.vae.to(accelerator.device)
    pool = load_offline_pool(config, generator, base)
    params = prepare_trainable(generator, config)
    optimizer = torch.optim.AdamW(
        params,
        lr=config.optimizer.lr,
        betas=tuple(config.optimizer.betas),
        weight_decay=config.optimizer.weight_decay,
    )
    start = 0
    resumed = latest_checkpoint(output)
    if resumed is not None:
        load_checkpoint(resumed, generator.transformer, optimizer)
        start = resumed.step
    generator.transformer, optimizer = accelerator.prepare(generator.transformer, optimizer)
    if config.tensorboard:
        accelerator.init_trackers("tensorboard")

    def optimizer_step() -> float:
        norm = accelerator.clip_grad_norm_(params, config.optimizer.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(norm)

    update = make_update(config, generator, reward, pool, optimizer_step)
    manifest = {
        "config": config.model_dump(mode="json"),
        "code_version": __version__,
        "reward": config.reward,
        "control_words": {"positive": config.positive_words, "negative": config.negative_words},
        "seed": config.seed,
    }
    session = _Session(accelerator, output, generator, config, optimizer, manifest, callbacks)

    def cancel_requested() -> bool:
        wanted = main and any(c.should_cancel() for c in callbacks)
        flag = torch.tensor([float(wanted)], device=accelerator.device)
        return bool(broadcast(flag, from_process=0).item())

    if config.sample_every and start == 0:
        session.samples(0, prompts)
    checkpoint = resumed
    bar = tqdm(total=config.steps, initial=start, disable=not (show_progress and main))
    began = time.perf_counter()
    for step in range(start, config.steps):
        if cancel_requested():
            bar.close()
            return TrainResult(step, True, session.save(step))
        losses, rewards, grad_norm = [], [], 0.0
        for micro in range(config.gradient_accumulation):
            chosen = draw(config, step, micro, accelerator.process_index, prompts)
            with accelerator.accumulate(generator.transformer):
                stats = update(step, chosen, accelerator.backward)
                if accelerator.sync_gradients:
                    grad_norm = optimizer_step()
                else:
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
            losses.append(stats.loss)
            rewards.append(stats.rewards)
        done = step + 1
        per_step = (time.perf_counter() - began) / (done - start)
        values = accelerator.gather(torch.cat(rewards).to(accelerator.device)).float().cpu()
        progress = Progress(
            done,
            config.steps,
            sum(losses) / len(losses),
            values.mean().item(),
            values.std().item() if len(values) > 1 else 0.0,
            grad_norm,
            per_step,
            per_step * (config.steps - done),
        )
        session.progress(progress)
        bar.update(1)
        bar.set_postfix(loss=f"{progress.loss:.4f}", reward=f"{progress.reward_mean:.4f}")
        if config.sample_every and done % config.sample_every == 0:
            session.samples(done, prompts)
        if done % config.checkpoint_every == 0 or done == config.steps:
            checkpoint = session.save(done)
    bar.close()
    accelerator.end_training()
    return TrainResult(config.steps, False, checkpoint)


@dataclass
class _Session:
    """What the loop reports to: callbacks, TensorBoard, the checkpoint and sample folders."""

    accelerator: object
    output: Path
    generator: Generator
    config: TrainConfig
    optimizer: torch.optim.Optimizer
    manifest: dict
    callbacks: Sequence[Callback]

    def progress(self, progress: Progress) -> None:
        if self.config.tensorboard:
            scalars = {
                "loss": progress.loss,
                "reward/mean": progress.reward_mean,
                "reward/std": progress.reward_std,
                "grad_norm": progress.grad_norm,
                "seconds_per_step": progress.seconds_per_step,
            }
            self.accelerator.log(scalars, step=progress.step)
        if self.accelerator.is_main_process:
            for callback in self.callbacks:
                callback.on_progress(progress)

    def samples(self, step: int, prompts: Sequence[str]) -> None:
        """Every rank samples (sharded models need all ranks); the main process reports."""
        was_training = self.generator.transformer.training
        self.generator.transformer.eval()
        images, texts, seeds = render_samples(self.generator, self.config, prompts)
        self.generator.transformer.train(was_training)
        if not self.accelerator.is_main_process:
            return
        path = self.output / "samples" / f"step-{step:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        labels = [f"{p[:14]} s{s}" for p, s in zip(texts, seeds, strict=True)]
        labelled_grid(images, labels, title=f"step {step}").save(path)
        for callback in self.callbacks:
            callback.on_samples(Samples(step, images, texts, seeds, path))

    def save(self, step: int) -> Checkpoint | None:
        """Gather the weights on every rank (sharded models need all), write on the main one."""
        self.accelerator.wait_for_everyone()
        state = self.accelerator.get_state_dict(self.generator.transformer)
        if not self.accelerator.is_main_process:
            return None
        transformer = self.accelerator.unwrap_model(self.generator.transformer)
        checkpoint = save_checkpoint(
            self.output,
            step,
            transformer,
            self.config.lora is not None,
            self.optimizer,
            self.manifest,
            state,
        )
        for callback in self.callbacks:
            callback.on_checkpoint(checkpoint)
        return checkpoint
