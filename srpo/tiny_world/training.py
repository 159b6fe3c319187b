"""Training the tiny world from seeds: VAE, reward dual encoder, then the generator.

Each stage is a short, readable loop over the rendered stream. ``train_world`` runs all
three and writes the weights and a manifest that the backends load.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from tqdm.auto import tqdm

from srpo.files import write_json_atomic
from srpo.models.flux import image_ids, pack_latents
from srpo.tiny_world import models
from srpo.tiny_world.data import stream
from srpo.tiny_world.weights import MANIFEST, save_component
from srpo.tiny_world.world import FAMILIES, random_caption


@dataclass
class WorldTraining:
    """Steps, batches and learning rates of the three stages (defaults fit 30 min on 2 cores),
    and the guidance scales tried for the shipped generator."""

    seed: int = 0
    vae_steps: int = 2000
    vae_batch: int = 16
    vae_lr: float = 2e-3
    vae_kl: float = 1e-6
    reward_steps: int = 900
    reward_batch: int = 128
    reward_lr: float = 1e-3
    reward_probe_weight: float = 0.5
    text_steps: int = 700
    generator_steps: int = 5200
    generator_batch: int = 32
    generator_lr: float = 1e-3
    generator_pool: int = 16384
    prompt_dropout: float = 0.1
    ema: float = 0.998
    cfg_candidates: tuple[float, ...] = (1.0, 1.5, 2.0, 2.5, 3.0)
    threads: int = 2


def _cosine_lr(step: int, total: int, base: float, warmup: int = 100) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_vae(cfg: WorldTraining, show: bool = True) -> AutoencoderKL:
    """An ``AutoencoderKL`` trained on its posterior mean with a weighted L1 + L2
    reconstruction and a small KL; the latent scale and shift are measured afterwards."""
    torch.manual_seed(cfg.seed)
    vae = models.build_vae()
    optimizer = torch.optim.Adam(vae.parameters(), lr=cfg.vae_lr)
    data = stream(cfg.vae_batch, seed=cfg.seed * 7919 + 1)
    bar = tqdm(range(cfg.vae_steps), desc="vae", disable=not show)
    for step in bar:
        _set_lr(optimizer, _cosine_lr(step, cfg.vae_steps, cfg.vae_lr))
        x = next(data).images * 2 - 1
        posterior = vae.encode(x).latent_dist
        reconstruction = vae.decode(posterior.mode()).sample
        # Weight pixels by how far they are from the image's mean colour, relative to the
        # image's contrast: the small shape carries the attributes (also in dark images),
        # the background most of the pixels.
        deviation = (x - x.mean(dim=(2, 3), keepdim=True)).abs().mean(dim=1, keepdim=True)
        weight = 1 + 4 * deviation / (deviation.mean(dim=(2, 3), keepdim=True) + 0.02)
        error = reconstruction - x
        l1 = error.abs().mean()
        # L1 on finite differences keeps edges and corners sharp (shape is read from them).
        edges = (error.diff(dim=2).abs().mean() + error.diff(dim=3).abs().mean()) / 2
        loss = (weight * (error.abs() + error.square())).mean() + edges
        loss = loss + cfg.vae_kl * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.set_postfix(l1=f"{l1.item():.4f}")
    vae.eval()
    with torch.no_grad():
        latents = torch.cat(
            [vae.encode(next(data).images * 2 - 1).latent_dist.mode() for _ in range(16)]
        )
    vae.register_to_config(
        scaling_factor=float(1 / latents.std()), shift_factor=float(latents.mean())
    )
    return vae


def train_reward(
    cfg: WorldTraining, show: bool = True, seed_offset: int = 1, steps: int | None = None
) -> torch.nn.Module:
    """A CLIP dual encoder trained contrastively on images and random partial captions.

    A linear probe per attribute family on the image embedding adds a supervised signal
    (the attributes are known from rendering); without it a small ViT learns colour
    statistics quickly but shape, size and style too slowly for a 2-core budget. The
    probes are dropped after training: the reward is the dual encoder alone.
    """
    steps = steps or cfg.reward_steps
    torch.manual_seed(cfg.seed + seed_offset)
    model = models.build_reward_model()
    dim = model.config.projection_dim
    probes = torch.nn.ModuleDict({f: torch.nn.Linear(dim, len(v)) for f, v in FAMILIES.items()})
    tokenizer = models.tokenizer()
    params = [*model.parameters(), *probes.parameters()]
    optimizer = torch.optim.AdamW(params, lr=cfg.reward_lr, weight_decay=0.05)
    data = stream(cfg.reward_batch, seed=cfg.seed * 7919 + 2 * seed_offset, keep=0.5)
    mean = torch.tensor(models.REWARD_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(models.REWARD_STD).view(1, 3, 1, 1)
    bar = tqdm(range(steps), desc="reward" if seed_offset == 1 else "text", disable=not show)
    for step in bar:
        _set_lr(optimizer, _cosine_lr(step, steps, cfg.reward_lr))
        batch = next(data)
        tokens = tokenizer(
            batch.captions,
            padding="max_length",
            max_length=models.MAX_TOKENS,
            truncation=True,
            return_tensors="pt",
        )
        out = model(
            input_ids=tokens.input_ids,
            attention_mask=tokens.attention_mask,
            pixel_values=(batch.images - mean) / std,
        )
        # Captions repeat within a batch: every image whose caption text matches is a positive.
        same = torch.tensor(
            [[a == b for b in batch.captions] for a in batch.captions], dtype=torch.float32
        )
        targets = same / same.sum(dim=1, keepdim=True)
        logits = out.logits_per_image
        contrastive = 0.5 * (
            -(targets * logits.log_softmax(dim=1)).sum(1).mean()
            - (targets * logits.t().log_softmax(dim=1)).sum(1).mean()
        )
        probe = sum(
            F.cross_entropy(
                head(out.image_embeds * 10),
                torch.tensor([FAMILIES[f].index(getattr(s, f)) for s in batch.scenes]),
            )
            for f, head in probes.items()
        )
        loss = contrastive + cfg.reward_probe_weight * probe
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.set_postfix(contrastive=f"{contrastive.item():.3f}", probe=f"{probe.item():.3f}")
    return model.eval()


def train_text_encoder(cfg: WorldTraining, show: bool = True):
    """The generator's text tower: the text half of a second CLIP, trained like the reward
    but from another seed and stream (separate from the reward, as CLIP-L and T5 are
    separate from HPS), then frozen for the generator."""
    clip = train_reward(cfg, show, seed_offset=4, steps=cfg.text_steps)
    text_encoder = models.build_text_encoder()
    text_encoder.load_state_dict(clip.text_model.state_dict())
    return text_encoder.eval().requires_grad_(False)


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters(), strict=True):
            e.lerp_(p, 1 - decay)


@torch.no_grad()
def encode_pool(vae: AutoencoderKL, size: int, seed: int, show: bool = True):
    """Render and encode ``size`` scenes once: packed, scaled latents and their scenes.

    Captions are drawn afresh every time a latent is used, so the pool costs no variety in
    text; encoding once keeps the VAE out of the generator's training step.
    """
    data = stream(128, seed=seed)
    latents, scenes = [], []
    scale, shift = vae.config.scaling_factor, vae.config.shift_factor
    for _ in tqdm(range(-(-size // 128)), desc="encode", disable=not show):
        batch = next(data)
        encoded = vae.encode(batch.images * 2 - 1).latent_dist.mode()
        latents.append(pack_latents((encoded - shift) * scale))
        scenes.extend(batch.scenes)
    return torch.cat(latents)[:size], scenes[:size]


def train_generator(
    cfg: WorldTraining, vae: AutoencoderKL, text_encoder: torch.nn.Module, show: bool = True
):
    """Rectified-flow training of the FLUX transformer on pre-encoded latents, conditioned on
    the frozen text tower (prompt dropout for classifier-free guidance); returns its EMA."""
    torch.manual_seed(cfg.seed + 2)
    transformer = models.build_transformer()
    ema_transformer = models.build_transformer()
    ema_transformer.load_state_dict(transformer.state_dict())
    encoder = models.TinyPromptEncoder(text_encoder)
    params = list(transformer.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.generator_lr, weight_decay=0.01)
    pool, scenes = encode_pool(vae, cfg.generator_pool, seed=cfg.seed * 7919 + 3, show=show)
    rng = random.Random(cfg.seed + 3)
    ids = image_ids(16, 16)
    bar = tqdm(range(cfg.generator_steps), desc="generator", disable=not show)
    for step in bar:
        _set_lr(optimizer, _cosine_lr(step, cfg.generator_steps, cfg.generator_lr, warmup=200))
        index = torch.randint(len(pool), (cfg.generator_batch,))
        x0 = pool[index]
        captions = [
            "" if rng.random() < cfg.prompt_dropout else random_caption(scenes[i], rng)
            for i in index.tolist()
        ]
        eps = torch.randn_like(x0)
        sigma = torch.sigmoid(torch.randn(x0.shape[0]))
        x_s = (1 - sigma[:, None, None]) * x0 + sigma[:, None, None] * eps
        sequence, pooled = encoder.encode(captions)
        prediction = transformer(
            hidden_states=x_s,
            timestep=sigma,
            pooled_projections=pooled,
            encoder_hidden_states=sequence,
            txt_ids=torch.zeros(sequence.shape[1], 3),
            img_ids=ids,
            return_dict=False,
        )[0]
        loss = F.mse_loss(prediction, eps - x0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        _ema_update(ema_transformer, transformer, cfg.ema if step > 500 else 0.0)
        bar.set_postfix(loss=f"{loss.item():.4f}")
    return ema_transformer.eval()


def train_world(directory: Path, cfg: WorldTraining, show: bool = True) -> dict[str, Any]:
    """Train every model from ``cfg.seed`` and write weights + manifest into ``directory``."""
    torch.set_num_threads(cfg.threads)
    directory = Path(directory)
    timings, files = {}, {}
    start = time.perf_counter()
    vae = train_vae(cfg, show)
    files["vae"] = save_component(directory, "vae", vae)
    timings["vae"] = time.perf_counter() - start
    reward = train_reward(cfg, show)
    files["reward"] = save_component(directory, "reward", reward)
    timings["reward"] = time.perf_counter() - start - sum(timings.values())
    text_encoder = train_text_encoder(cfg, show)
    transformer = train_generator(cfg, vae, text_encoder, show)
    files["transformer"] = save_component(directory, "transformer", transformer)
    files["text_encoder"] = save_component(directory, "text_encoder", text_encoder)
    timings["generator"] = time.perf_counter() - start - sum(timings.values())
    manifest = {
        "files": files,
        "configs": {
            "vae": {k: v for k, v in vae.config.items() if not k.startswith("_")},
            "transformer": models.TRANSFORMER_CONFIG,
            "text_encoder": models.TEXT_ENCODER_CONFIG,
            "reward": models.REWARD_CONFIG,
            "reward_preprocess": {"mean": models.REWARD_MEAN, "std": models.REWARD_STD},
            "max_tokens": models.MAX_TOKENS,
        },
        "training": asdict(cfg),
        "training_seconds": {k: round(v, 1) for k, v in timings.items()},
    }
    write_json_atomic(directory / MANIFEST, manifest)
    return manifest


def train_and_gate(directory: Path | str | None = None, seed: int = 0, show: bool = True):
    """``srpo tiny-world train``: train from seeds, then :func:`gate_and_record`."""
    from srpo.tiny_world.weights import WEIGHTS_DIR

    directory = Path(directory or WEIGHTS_DIR)
    cfg = WorldTraining(seed=seed)
    train_world(directory, cfg, show)
    return gate_and_record(directory, cfg)


def gate_and_record(directory: Path, cfg: WorldTraining) -> dict[str, Any]:
    """Choose the guidance scale on held-out seeds, run the full gates, and record both in
    the manifest. Returns the manifest."""
    from srpo.models.tiny import DEFAULT_SAMPLING, load_tiny_generator
    from srpo.tiny_world.gates import choose_cfg_scale, evaluate
    from srpo.tiny_world.weights import read_manifest

    manifest = read_manifest(directory)
    scale, trials = choose_cfg_scale(load_tiny_generator(directory), cfg.cfg_candidates)
    manifest["sampling"] = {**DEFAULT_SAMPLING, "cfg_scale": scale, "cfg_trials": trials}
    write_json_atomic(directory / MANIFEST, manifest)
    manifest["gates"] = evaluate(directory)
    write_json_atomic(directory / MANIFEST, manifest)
    return manifest
