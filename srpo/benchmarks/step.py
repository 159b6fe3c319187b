"""What one Direct-Align update costs beyond the passes it cannot avoid.

Times, in one process and interleaved, (a) one SRPO update in offline mode exactly as the
trainer runs it (prompt encoding, noise and ``s*`` draws, both branches, the SRP reward with
its discount, backward, gradient clipping, AdamW step) and (b) the bare minimum with the same
work: per branch one model forward with gradient (``generator.velocity``: the transformer,
with classifier-free guidance where the model uses it), a VAE decode and a reward image pass,
one backward through both, on inputs and text embeddings prepared beforehand; the same AdamW
step.
``ratio`` = median (a) / median (b); what lies above 1 is overhead the trainer adds.
``cpu_ratio`` is the same from the process's CPU time, which other processes' load does not
inflate on one intra-op thread (``OMP_NUM_THREADS=1``); with more threads it also counts their
spin-waits, and on a loaded machine the wall-clock medians of many threads mostly measure
those waits.

``model``: ``tiny`` (the shipped tiny world and its reward) or a diffusers backend's random
small config (:mod:`srpo.models.small`) with a random small CLIP reward at 32 px, trained in
full, fp32, without CFG, on random pixels encoded once (offline mode, as for the tiny world), the text encoders behind the
on-disk prompt cache as ``from_pretrained`` loads them.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
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


def small_clip_reward(image_size: int = 32):
    """A random small transformers CLIP reward (no download)."""
    from transformers import CLIPConfig, CLIPModel

    from srpo.models.small_parts import WORDS
    from srpo.rewards.clip import CLIPReward
    from srpo.tiny_world.tokenizer import BOS_ID, EOS_ID, PAD_ID, build_word_tokenizer

    torch.manual_seed(3)
    tokenizer = build_word_tokenizer(WORDS, model_max_length=16)
    text = {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64}
    text |= {"num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 16}
    text |= {"eos_token_id": EOS_ID, "bos_token_id": BOS_ID, "pad_token_id": PAD_ID}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1}
    vision |= {"num_attention_heads": 2, "image_size": image_size, "patch_size": 8}
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    return CLIPReward(model, tokenizer, [0.48, 0.46, 0.41], [0.27, 0.26, 0.28], image_size)


def _models(model: str, config):
    """The generator, reward and the real images and captions of the offline pool."""
    if model == "tiny":
        generator, reward = build_models(config)
        real = heldout(config.batch_size)
        return generator, reward, real.images, real.captions
    from srpo.models.prompt_cache import CachedPromptEncoder
    from srpo.models.small import SMALL_RESOLUTION, small_generator

    generator = small_generator(model)
    # As from_pretrained loads them: text encoders behind the on-disk prompt cache.
    encoder = generator.prompt_encoder
    cache = Path(tempfile.mkdtemp(prefix="srpo-bench-prompts-"))
    generator.prompt_encoder = CachedPromptEncoder(lambda: encoder, cache, f"bench:{model}")
    pixels = torch.rand(config.batch_size, 3, SMALL_RESOLUTION, SMALL_RESOLUTION)
    captions = config.prompt_list()[: config.batch_size]
    return generator, small_clip_reward(SMALL_RESOLUTION), pixels, captions


def bench_step(
    repeats: int = 15, warmup: int = 3, batch: int = 4, model: str = "tiny"
) -> dict[str, Any]:
    """Median seconds of the trainer's update and of the bare passes, and their ratio."""
    config = preset("tiny-demo", batch_size=batch, checkpoint_every=10**6)
    torch.manual_seed(config.seed)
    generator, reward, images, captions = _models(model, config)
    params = prepare_trainable(generator, config)
    adamw = config.adamw()
    optimizer = torch.optim.AdamW(params, lr=adamw["lr"])
    pool = encode_pool(generator, images, captions)
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
    cpu: dict[str, list[float]] = {"update": [], "bare": []}
    for step in range(warmup + repeats):
        for name, run in (("update", ours), ("bare", bare)):
            began, began_cpu = time.perf_counter(), time.process_time()
            run(step)
            if step >= warmup:
                timings[name].append(time.perf_counter() - began)
                cpu[name].append(time.process_time() - began_cpu)
    update_s = statistics.median(timings["update"])
    bare_s = statistics.median(timings["bare"])
    update_cpu, bare_cpu = statistics.median(cpu["update"]), statistics.median(cpu["bare"])
    return {
        "model": model,
        "parameters": sum(p.numel() for p in generator.transformer.parameters()),
        "batch": batch,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "update_seconds": round(update_s, 6),
        "bare_seconds": round(bare_s, 6),
        "ratio": round(update_s / bare_s, 3),
        "update_cpu_seconds": round(update_cpu, 6),
        "bare_cpu_seconds": round(bare_cpu, 6),
        "cpu_ratio": round(update_cpu / bare_cpu, 3),
    }
