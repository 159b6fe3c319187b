"""The fine-tuning loop: one readable pass from config to checkpoints, on accelerate.

Per update and per micro-batch: pick this rank's prompts, draw the noise prior (the same on
every rank, as in the paper), roll the current model out without gradients, draw ``s*``,
compute the Direct-Align / SRPO objective, backpropagate. Every random draw is derived from
``(seed, step)``, so a resumed run repeats exactly what an uninterrupted one would do.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from srpo import __version__
from srpo.checkpoints import Checkpoint, latest_checkpoint, load_checkpoint, save_checkpoint
from srpo.config import TrainConfig
from srpo.direct_align import (
    DirectAlignSettings,
    Discount,
    sample_target_sigma,
    srpo_objective,
)
from srpo.models import load_generator
from srpo.models.base import Generator
from srpo.rewards import load_reward
from srpo.rewards.srp import ControlWords


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


class Callback:
    """Hooks the trainer calls; override what you need (the studio writes to its database)."""

    def on_progress(self, progress: Progress) -> None:
        """After every update."""

    def on_checkpoint(self, checkpoint: Checkpoint) -> None:
        """After a checkpoint is complete on disk."""

    def should_cancel(self) -> bool:
        """Checked before every update; True saves a checkpoint and stops."""
        return False


@dataclass(frozen=True)
class TrainResult:
    """How a run ended."""

    step: int
    cancelled: bool
    checkpoint: Checkpoint | None


def build_models(config: TrainConfig):
    """The generator and frozen reward a config names."""
    options = {}
    if config.model == "flux":
        options = {
            "resolution": (config.resolution, config.resolution),
            "guidance": config.guidance,
        }
    generator = load_generator(config.model, config.model_path, **options)
    if config.cfg_scale != 1.0:
        generator.cfg_scale = config.cfg_scale
    return generator, load_reward(config.reward, config.reward_path)


def prepare_trainable(generator: Generator, config: TrainConfig) -> list[torch.nn.Parameter]:
    """Add LoRA adapters (or unfreeze everything) and return the trainable parameters."""
    transformer = generator.transformer
    transformer.requires_grad_(config.lora is None)
    if config.lora is not None:
        from peft import LoraConfig

        transformer.add_adapter(
            LoraConfig(
                r=config.lora.rank,
                lora_alpha=config.lora.alpha,
                target_modules=list(config.lora.target_modules),
                init_lora_weights="gaussian",
            )
        )
    if config.gradient_checkpointing:
        generator.enable_gradient_checkpointing(True)
    transformer.train()
    return [p for p in transformer.parameters() if p.requires_grad]


def _draw(config: TrainConfig, step: int, micro: int, rank: int, prompts: Sequence[str]):
    """This rank's prompts and the shared torch generator for the noise prior and ``s*``."""
    pick = random.Random(hash((config.seed, step, micro, rank)) & 0xFFFFFFFF)
    batch = [pick.choice(prompts) for _ in range(config.batch_size)]
    shared = torch.Generator().manual_seed((config.seed * 1_000_003 + step * 1009 + micro) % 2**63)
    return batch, shared


def train(
    config: TrainConfig,
    output: str | Path,
    callbacks: Sequence[Callback] = (),
    config_dir: str | Path | None = None,
    show_progress: bool = False,
) -> TrainResult:
    """Fine-tune as ``config`` says, checkpointing into ``output``; resumes if it can."""
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    if config.method not in ("srpo", "direct_align"):
        raise ValueError(f"method {config.method!r}: the baseline trainers are not built yet")
    prompts = config.prompt_list(Path(config_dir) if config_dir else None)
    output = Path(output)
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation,
    )
    torch.manual_seed(config.seed)
    generator, reward = build_models(config)
    reward.to(accelerator.device)
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
    generator.vae.to(accelerator.device)

    words = None
    if config.method == "srpo":
        words = ControlWords.of(config.positive_words, config.negative_words, config.word_mode)
    settings = DirectAlignSettings(
        d=config.d,
        discount_denoise=Discount(**config.discount_denoise.model_dump()),
        discount_inversion=Discount(**config.discount_inversion.model_dump()),
        inversion=config.inversion,
        loss=config.loss,
        threshold=config.threshold,
    )
    manifest = {
        "config": config.model_dump(mode="json"),
        "code_version": __version__,
        "reward": config.reward,
        "control_words": {"positive": config.positive_words, "negative": config.negative_words},
        "seed": config.seed,
    }
    checkpoint = resumed
    bar = tqdm(total=config.steps, initial=start, disable=not show_progress, desc="train")
    began, step = time.perf_counter(), start
    for step in range(start, config.steps):
        if any(c.should_cancel() for c in callbacks):
            checkpoint = _save(
                accelerator, output, step, generator, config, optimizer, manifest, callbacks
            )
            bar.close()
            return TrainResult(step, True, checkpoint)
        losses, rewards, grad_norm = [], [], 0.0
        for micro in range(config.gradient_accumulation):
            batch, shared = _draw(config, step, micro, accelerator.process_index, prompts)
            with accelerator.accumulate(generator.transformer):
                cond = generator.encode_prompts(batch)
                eps = generator.noise(config.batch_size, shared)
                x0 = generator.sample(cond, eps, config.rollout_steps, config.shift)
                s_star = sample_target_sigma(
                    config.batch_size,
                    tuple(config.sigma_range),
                    config.d,
                    config.sigma_sampling,
                    config.rollout_steps,
                    config.shift,
                    generator=shared,
                ).to(accelerator.device)
                pair = words.pick(step, config.seed) if words else None
                objective = srpo_objective(
                    generator, reward, x0, eps, cond, batch, s_star, settings, pair
                )
                accelerator.backward(objective.loss)
                if accelerator.sync_gradients:
                    grad_norm = float(
                        accelerator.clip_grad_norm_(params, config.optimizer.grad_clip)
                    )
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            losses.append(objective.loss.item())
            rewards.append(objective.rewards["denoise"].float().cpu())
        done = step + 1
        elapsed = time.perf_counter() - began
        per_step = elapsed / (done - start)
        values = torch.cat(rewards)
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
        for c in callbacks:
            c.on_progress(progress)
        bar.update(1)
        bar.set_postfix(loss=f"{progress.loss:.4f}", reward=f"{progress.reward_mean:.4f}")
        if done % config.checkpoint_every == 0 or done == config.steps:
            checkpoint = _save(
                accelerator, output, done, generator, config, optimizer, manifest, callbacks
            )
    bar.close()
    return TrainResult(config.steps, False, checkpoint)


def _save(accelerator, output, step, generator, config, optimizer, manifest, callbacks):
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return None
    transformer = accelerator.unwrap_model(generator.transformer)
    checkpoint = save_checkpoint(
        output, step, transformer, config.lora is not None, optimizer, manifest
    )
    for c in callbacks:
        c.on_checkpoint(checkpoint)
    return checkpoint
