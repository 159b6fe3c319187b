"""What one Direct-Align update costs beyond the passes it cannot avoid.

Times, in one process and interleaved, (a) one SRPO update in offline mode exactly as the
trainer runs it (prompt encoding, noise and ``s*`` draws, both branches, the SRP reward with
its discount, backward, gradient clipping, AdamW step) and (b) the bare minimum with the same
work: per branch one model forward with gradient (``generator.velocity``: the transformer,
with classifier-free guidance where the model uses it), a VAE decode and a reward image pass,
one backward through both, on inputs and text embeddings prepared beforehand; the same AdamW
step.
``ratio`` = median (a) / median (b); what lies above 1 is overhead the trainer adds.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from srpo import flow
from srpo.config import preset
from srpo.direct_align import DirectAlignUpdate
from srpo.offline import OfflinePool, encode_pool
from srpo.rewards.srp import augment, relative_direction
from srpo.tiny_world.data import heldout
from srpo.train import build_models, draw, prepare_trainable
from srpo.update import UpdateInputs


def _bare_step(generator, reward, optimizer, inputs) -> None:
    loss = 0.0
    for x_model, sigma_model, base, factor, direction in inputs["branches"]:
        velocity = generator.velocity(x_model, sigma_model, inputs["cond"])
        image = reward.encode_image(generator.decode(base + factor * velocity))
        loss = loss - (image * direction).sum(-1).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _bare_inputs(generator, reward, pool: OfflinePool, config, prompts) -> dict[str, Any]:
    """Noised latents, levels and text directions of both branches, computed once."""
    settings = config.direct_align
    batch, d = config.batch_size, settings.d
    x0 = pool.latents[:batch]
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    s_star = torch.full((batch,), sum(settings.sigma_range) / 2)
    positive, negative = config.positive_words[0], config.negative_words[0]
    text_pos = reward.encode_text(augment(positive, prompts))
    text_neg = reward.encode_text(augment(negative, prompts))
    branches = []
    level = s_star[:, None, None]
    for sign, discount, (pos, neg) in (
        (1, settings.discount_denoise, (text_pos, text_neg)),
        (-1, settings.discount_inversion, (text_neg, text_pos)),
    ):
        sigma = s_star + sign * d
        x_model = flow.add_noise(x0, eps, sigma)
        # Euler step to s* then recovery: x0_hat = base + factor * v_hat, both fixed here.
        base = (x_model - level * eps) / (1 - level)
        factor = ((s_star - sigma) / (1 - s_star))[:, None, None]
        k = discount.at(s_star if sign > 0 else sigma, tuple(settings.sigma_range))
        branches.append((x_model, sigma, base, factor, relative_direction(pos, neg, k)))
    return {"branches": branches, "cond": generator.encode_prompts(prompts)}


def bench_step(repeats: int = 15, warmup: int = 3, batch: int = 4) -> dict[str, Any]:
    """Median seconds of the trainer's update and of the bare passes, and their ratio."""
    config = preset("tiny-demo", batch_size=batch, checkpoint_every=10**6)
    torch.manual_seed(config.seed)
    generator, reward = build_models(config)
    params = prepare_trainable(generator, config)
    adamw = config.adamw()
    optimizer = torch.optim.AdamW(params, lr=adamw["lr"])
    real = heldout(batch)
    pool = encode_pool(generator, real.images, real.captions)
    update = DirectAlignUpdate(UpdateInputs(config, generator, reward, pool))
    prompts = config.prompt_list()
    inputs = _bare_inputs(generator, reward, pool, config, prompts[:batch])

    def ours(step: int) -> None:
        update(step, draw(config, step, 0, 0, prompts), lambda loss: loss.backward())
        torch.nn.utils.clip_grad_norm_(params, adamw["grad_clip"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def bare(step: int) -> None:
        _bare_step(generator, reward, optimizer, inputs)

    timings: dict[str, list[float]] = {"update": [], "bare": []}
    for step in range(warmup + repeats):
        for name, run in (("update", ours), ("bare", bare)):
            began = time.perf_counter()
            run(step)
            if step >= warmup:
                timings[name].append(time.perf_counter() - began)
    update_s = statistics.median(timings["update"])
    bare_s = statistics.median(timings["bare"])
    return {
        "model": "tiny",
        "batch": batch,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "update_seconds": round(update_s, 4),
        "bare_seconds": round(bare_s, 4),
        "ratio": round(update_s / bare_s, 3),
    }
