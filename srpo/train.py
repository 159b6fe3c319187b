"""The fine-tuning loop: one readable pass from config to checkpoints, on accelerate.

Per update and per micro-batch: pick this rank's prompts, draw the noise prior (the same on
every rank, as in the paper) and this rank's own ``s*`` and other draws, run the method's
update (:mod:`srpo.methods`), which backpropagates its losses; clip and step at the sync.
Trainable weights and AdamW state are fp32 under every precision policy. Every random draw is derived from ``(seed, step)``, so a resumed run
repeats exactly what an uninterrupted one would do. Callbacks run on the main process only.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from srpo import __version__
from srpo.checkpoint_store import fetch_latest, upload_checkpoint
from srpo.checkpoints import Checkpoint, latest_checkpoint, load_checkpoint, save_checkpoint
from srpo.config import TrainConfig
from srpo.eta import EtaClock
from srpo.methods import make_update
from srpo.models import generator_for
from srpo.models.base import Generator, cfg_scale_set
from srpo.models.loader import add_lora
from srpo.monitor import GoldMonitor, HackingWarning
from srpo.offline import encode_pool, read_image_folder
from srpo.precision import upcast_trainable
from srpo.rewards import check_reward_for_method, load_reward
from srpo.rewards.base import TextImageReward
from srpo.sampling import labelled_grid, sample_images
from srpo.update import Draw, UpdateInputs


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
    """Images of the fixed evaluation prompts and seeds at one step (step 0: the base model),
    with the hacking monitor's gold signals on them and its warning, if any."""

    step: int
    images: torch.Tensor
    prompts: list[str]
    seeds: list[int]
    path: Path
    metrics: dict[str, float] = field(default_factory=dict)
    warning: HackingWarning | None = None


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


def build_models(config: TrainConfig) -> tuple[Generator, TextImageReward]:
    """The generator and the frozen reward a config names, frozen parts in the policy's dtype."""
    reward = load_reward(config.reward, config.reward_path)
    check_reward_for_method(reward, config.method)  # reward-only rewards: GRPO only
    return generator_for(config), reward.to(config.precision_policy.frozen)


def prepare_trainable(generator: Generator, config: TrainConfig) -> list[torch.nn.Parameter]:
    """Add LoRA adapters (or unfreeze everything) and return the trainable parameters.

    They are fp32 whatever the precision policy (master weights, as the official code keeps);
    a frozen base under LoRA stays in the policy's frozen dtype.
    """
    transformer = generator.transformer
    transformer.requires_grad_(config.lora is None)
    if config.lora is not None:
        add_lora(transformer, config.lora)
    if config.gradient_checkpointing:
        generator.enable_gradient_checkpointing(True)
    transformer.train()
    trainable = [p for p in transformer.parameters() if p.requires_grad]
    return upcast_trainable(trainable, config.precision_policy.trainable)


def draw(config: TrainConfig, step: int, micro: int, rank: int, prompts: Sequence[str]) -> Draw:
    """This rank's prompts and random sources, and the torch generator shared by all ranks."""
    pick = random.Random(hash((config.seed, step, micro, rank)) & 0xFFFFFFFF)
    batch = [pick.choice(prompts) for _ in range(config.batch_size)]
    shared = torch.Generator().manual_seed((config.seed * 1_000_003 + step * 1009 + micro) % 2**63)
    local = torch.Generator().manual_seed(pick.getrandbits(63))
    return Draw(batch, pick, shared, local)


def load_offline_pool(config: TrainConfig, generator: Generator, base: Path | None):
    """The encoded real images of offline mode, or None for rollouts."""
    if config.offline_images is None:
        return None
    folder = Path(base or ".") / config.offline_images
    pixels, captions = read_image_folder(folder, generator.resolution)
    missing = [i for i, caption in enumerate(captions) if caption is None]
    if missing and config.offline_captions == "required":
        raise ValueError(
            f"offline_images: {len(missing)} of {len(captions)} images have no caption file "
            "(name.txt beside name.png) and offline_captions is 'required'"
        )
    return encode_pool(generator, pixels, captions)


def render_samples(generator: Generator, config: TrainConfig, prompts: Sequence[str]):
    """The fixed-seed evaluation images ``[P*S, 3, H, W]`` with their prompts and seeds, at the
    rollout's steps, shift and CFG (the official Qwen-Image run trains at CFG 1 and rolls out
    and visualises at 4) and the training guidance embedding (the official FLUX.1 run rolls out
    at guidance 1 but visualises at 3.5, its training guidance)."""
    chosen = list(config.eval_prompts or prompts[:4])
    pairs = [(p, s) for p in chosen for s in config.eval_seeds]
    texts, seeds = [p for p, _ in pairs], [s for _, s in pairs]
    with cfg_scale_set(generator, config.rollout_cfg_scale):
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
        # accelerate's bf16 keeps FSDP's sharded masters fp32 and computes in bf16; the
        # generator's own autocast (srpo.precision) does the same on one GPU and under DDP.
        mixed_precision="bf16" if config.precision == "bf16" else "no",
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
    adamw = config.adamw()
    optimizer = torch.optim.AdamW(
        params, lr=adamw["lr"], betas=adamw["betas"], weight_decay=adamw["weight_decay"]
    )
    start = 0
    if config.checkpoint_url:  # each rank, on its own node: its output folder may be its own
        resumed = fetch_latest(config.checkpoint_url, output)
    else:
        resumed = latest_checkpoint(output)
    if resumed is not None:
        load_checkpoint(resumed, generator.transformer, optimizer)
        start = resumed.step
    generator.transformer, optimizer = accelerator.prepare(generator.transformer, optimizer)
    if config.tensorboard:
        accelerator.init_trackers("tensorboard")

    def optimizer_step() -> float:
        norm = accelerator.clip_grad_norm_(params, adamw["grad_clip"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(norm)

    update = make_update(UpdateInputs(config, generator, reward, pool, optimizer_step))
    manifest = {
        # The processes this run really had, as the studio records before queueing, so a run
        # from `srpo train` and the same job from the studio store the same config.
        "config": config.model_dump(mode="json") | {"num_workers": accelerator.num_processes},
        "code_version": __version__,
        "reward": config.reward,
        "control_words": {"positive": config.positive_words, "negative": config.negative_words},
        "seed": config.seed,
    }
    session = RunReporter(accelerator, output, generator, config, optimizer, manifest, callbacks)

    def cancel_requested() -> bool:
        wanted = main and any(c.should_cancel() for c in callbacks)
        flag = torch.tensor([float(wanted)], device=accelerator.device)
        return bool(broadcast(flag, from_process=0).item())

    clock = EtaClock(config.steps, config.sample_every, config.checkpoint_every)
    if config.sample_every and start == 0:
        clock.samples.append(_timed(lambda: session.samples(0, prompts)))
    checkpoint = resumed
    bar = tqdm(total=config.steps, initial=start, disable=not (show_progress and main))
    began = time.perf_counter()
    for step in range(start, config.steps):
        if cancel_requested():
            bar.close()
            return TrainResult(step, True, session.save(step))
        update_began = time.perf_counter()
        losses, rewards, grad_norm = [], [], 0.0
        for micro in range(config.gradient_accumulation):
            chosen = draw(config, step, micro, accelerator.process_index, prompts)
            with accelerator.accumulate(generator.transformer):
                stats = update(step, chosen, accelerator.backward)
                # Only the last micro-batch of an accumulation syncs: there DDP all-reduces
                # the summed gradients and we clip and step once. Before it accelerate's
                # prepared optimizer would skip step() and zero_grad() anyway (and
                # backward() has already scaled each loss by 1 / gradient_accumulation).
                if accelerator.sync_gradients:
                    grad_norm = optimizer_step()
            losses.append(stats.loss)
            rewards.append(stats.rewards)
        done = step + 1
        clock.updates.append(time.perf_counter() - update_began)
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
            clock.remaining(done),
        )
        session.progress(progress)
        bar.update(1)
        bar.set_postfix(loss=f"{progress.loss:.4f}", reward=f"{progress.reward_mean:.4f}")
        if config.sample_every and done % config.sample_every == 0:
            clock.samples.append(_timed(lambda at=done: session.samples(at, prompts)))
        if done % config.checkpoint_every == 0 or done == config.steps:
            save_began = time.perf_counter()
            checkpoint = session.save(done)
            clock.saves.append(time.perf_counter() - save_began)
    bar.close()
    accelerator.end_training()
    return TrainResult(config.steps, False, checkpoint)


def _timed(work: Callable[[], object]) -> float:
    """Seconds ``work`` took."""
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


@dataclass
class RunReporter:
    """What the loop reports to: callbacks, TensorBoard, the checkpoint and sample folders."""

    accelerator: object
    output: Path
    generator: Generator
    config: TrainConfig
    optimizer: torch.optim.Optimizer
    manifest: dict
    callbacks: Sequence[Callback]

    def __post_init__(self) -> None:
        self.monitor = GoldMonitor(self.config, self.output / "samples" / "monitor.jsonl")

    def progress(self, progress: Progress) -> None:
        self.monitor.observe(progress.reward_mean)
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
        metrics, warning = self.monitor.measure(step, images, texts)
        if self.config.tensorboard:
            scalars = {f"monitor/{k}": v for k, v in metrics.items()}
            scalars |= {f"monitor/drift/{k}": v for k, v in self.monitor.drift().items()}
            self.accelerator.log(scalars, step=step)
        for callback in self.callbacks:
            callback.on_samples(Samples(step, images, texts, seeds, path, metrics, warning))

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
        if self.config.checkpoint_url:  # before callbacks record it: it is there once recorded
            upload_checkpoint(checkpoint, self.config.checkpoint_url)
        for callback in self.callbacks:
            callback.on_checkpoint(checkpoint)
        return checkpoint
