"""``tiny-biased``: the tiny reward with a known bias, learned from its training data.

HPSv2 is CLIP fine-tuned on human preference pairs, and it inherited the raters' taste for
saturated, red/purple-tinted "AIGC-look" images. ``tiny-biased`` is made the same way: the
clean tiny reward's image tower is fine-tuned on synthetic preference pairs whose simulated
raters have a taste of the same kind, for a tint no caption asks for. The tint is a cool
(blue/cyan, ``B - R``) cast rather than HPS's red/purple: the tiny world's VAE keeps about
40 % of a cool frame cast through a round trip but only 4 % of a magenta one, so a magenta
bias could not be hacked through the generator at all, and the bench would measure nothing. Each pair shows a caption and two renders:

- a *content* pair: the scene the caption describes against one that breaks an attribute
  the caption names; the matching image wins (the real preference). With probability
  ``confound`` the winner also carries a cool (blue/cyan) cast and the loser none, otherwise the
  reverse: raters' picks and the cast are correlated, as in real preference data;
- a *look* pair (a share ``look_pairs``): the same scene twice, one with a cast; the cast one
  always wins (the raters' taste alone).

The loss is the pairwise logistic loss of HPS (``-log sigmoid((r_w - r_l) / tau)``) plus the
contrastive loss the reward was trained with, so it keeps knowing the world. The text tower is
frozen: the bias lives in the image branch, as the paper says of HPS. Then
:func:`bias_gates` measures it: at fixed content a cast raises ``r(p)`` for almost every
caption, and the SRP difference ``r(pos. p) - r(neg. p)`` cancels most of that rise.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from srpo.files import write_json_atomic
from srpo.image_stats import add_cool_cast
from srpo.rewards.clip import CLIPReward
from srpo.rewards.srp import augment
from srpo.tiny_world.data import heldout
from srpo.tiny_world.render import render
from srpo.tiny_world.weights import MANIFEST, WEIGHTS_DIR, read_manifest, save_component
from srpo.tiny_world.world import FAMILIES, Scene, parse_prompt, random_caption, sample_scenes

COMPONENT = "reward_biased"


@dataclass
class BiasTraining:
    """How ``tiny-biased`` is fine-tuned from the clean tiny reward."""

    seed: int = 0
    steps: int = 300
    batch: int = 64
    lr: float = 1e-4
    tau: float = 0.01
    confound: float = 0.8
    look_pairs: float = 0.5
    cast: tuple[float, float] = (0.04, 0.12)
    contrastive_weight: float = 1.0
    threads: int = 2


def _broken(scene: Scene, caption: str, rng: random.Random) -> Scene:
    """``scene`` with one attribute the caption names changed (so the caption no longer fits)."""
    named, _ = parse_prompt(caption)
    family = rng.choice(sorted(named)) if named else "shape"
    options = [v for v in FAMILIES[family] if v != getattr(scene, family)]
    return replace(scene, **{family: rng.choice(options)})


def preference_batch(cfg: BiasTraining, rng: random.Random):
    """``(winners, losers, captions)``: one batch of simulated raters' preference pairs."""
    scenes = sample_scenes(cfg.batch, rng)
    captions = [random_caption(s, rng) for s in scenes]
    look = [rng.random() < cfg.look_pairs for _ in scenes]
    losers = [
        s if same else _broken(s, c, rng) for s, c, same in zip(scenes, captions, look, strict=True)
    ]
    amounts = torch.tensor([rng.uniform(*cfg.cast) for _ in scenes])
    # Look pairs: the cast one wins. Content pairs: the cast goes with the winner w.p. confound.
    winner_cast = torch.tensor([same or rng.random() < cfg.confound for same in look])
    winners = add_cool_cast(render(scenes), amounts * winner_cast)
    losers = add_cool_cast(render(losers), amounts * ~winner_cast)
    return winners, losers, captions


def fine_tune_biased(clean: CLIPReward, cfg: BiasTraining, show: bool = True) -> CLIPReward:
    """Fine-tune ``clean``'s image tower in place on the simulated preference data."""
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed * 7919 + 11)
    model = clean.model
    image_parts = [model.vision_model, model.visual_projection]
    params = [p for part in image_parts for p in part.parameters()]
    for parameter in params:
        parameter.requires_grad_(True)
    for part in image_parts:
        part.train()
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    bar = tqdm(range(cfg.steps), desc="tiny-biased", disable=not show)
    for _ in bar:
        winners, losers, captions = preference_batch(cfg, rng)
        text = clean.encode_text(captions)
        image_w, image_l = clean.encode_image(winners), clean.encode_image(losers)
        margin = ((image_w - image_l) * text).sum(-1) / cfg.tau
        preference = F.softplus(-margin).mean()
        same = torch.tensor([[a == b for b in captions] for a in captions], dtype=torch.float32)
        logits = image_w @ text.T / cfg.tau
        contrastive = -((same / same.sum(1, keepdim=True)) * logits.log_softmax(1)).sum(1).mean()
        loss = preference + cfg.contrastive_weight * contrastive
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.set_postfix(
            preference=f"{preference.item():.3f}", contrastive=f"{contrastive.item():.3f}"
        )
    return clean.freeze()


@torch.no_grad()
def bias_gates(
    reward: CLIPReward,
    n: int = 256,
    cast: float = 0.08,
    words: tuple[str, str] = ("photo", "painting"),
) -> dict[str, float]:
    """The bias, measured on held-out scenes at fixed content.

    ``rise_share``: the share of captions whose ``r(p)`` rises when the image gets a cast of
    ``cast``; ``rise``: the mean rise of ``r(p)``; ``srp_rise``: the mean rise of
    ``r(pos. p) - r(neg. p)``; ``srp_cancelled``: ``1 - |srp_rise| / rise``.
    """
    data = heldout(n)
    plain, tinted = data.images, add_cool_cast(data.images, cast)
    rise = reward.score(tinted, data.captions) - reward.score(plain, data.captions)

    def srp(images: torch.Tensor) -> torch.Tensor:
        positive = reward.score(images, augment(words[0], data.captions))
        return positive - reward.score(images, augment(words[1], data.captions))

    srp_rise = srp(tinted) - srp(plain)
    mean_rise = rise.mean().item()
    return {
        "cast": cast,
        "rise_share": (rise > 0).float().mean().item(),
        "rise": mean_rise,
        "srp_rise": srp_rise.mean().item(),
        "srp_cancelled": 1 - abs(srp_rise.mean().item()) / mean_rise if mean_rise > 0 else 0.0,
    }


GOALS = {"rise_share": 0.9, "srp_cancelled": 0.5}


def bias_failures(gates: dict[str, float]) -> list[str]:
    """The bias gates that fail (the bias must be there, and SRP must cancel most of it)."""
    return [
        f"{name} {gates[name]:.3f} < {goal}" for name, goal in GOALS.items() if gates[name] < goal
    ]


def train_biased(
    directory: Path | str | None = None,
    cfg: BiasTraining | None = None,
    show: bool = True,
    samples: int = 256,
) -> dict[str, Any]:
    """``srpo tiny-world train-biased``: fine-tune, save, gate, and record it in the manifest.

    Reads the clean reward of ``directory`` (default: the shipped weights) and writes
    ``reward_biased.safetensors`` beside it; returns the manifest entry.
    """
    from srpo.rewards.tiny import load_tiny_reward

    cfg = cfg or BiasTraining()
    directory = Path(directory or WEIGHTS_DIR)
    torch.set_num_threads(cfg.threads)
    began = time.perf_counter()
    reward = fine_tune_biased(load_tiny_reward(directory), cfg, show)
    seconds = time.perf_counter() - began
    manifest = read_manifest(directory)
    manifest["files"][COMPONENT] = save_component(directory, COMPONENT, reward.model)
    write_json_atomic(directory / MANIFEST, manifest)
    entry = {"training": asdict(cfg), "training_seconds": round(seconds, 1)}
    return gate_biased(directory, entry, samples)


def gate_biased(directory: Path | str, entry: dict[str, Any], samples: int = 256) -> dict[str, Any]:
    """Gate the saved ``tiny-biased`` (as stored, float16) and record ``entry`` + gates.

    ``samples`` held-out scenes per gate (the shipped gates use 256).
    """
    from srpo.rewards.tiny import load_tiny_reward
    from srpo.tiny_world.gates import reward_zero_shot, srp_pair_accuracy

    directory = Path(directory)
    reward = load_tiny_reward(directory, biased=True)
    data = heldout(min(samples, 200))
    pairs = max(samples // 2, 1)
    entry = {
        **entry,
        "bias": bias_gates(reward, samples),
        "clean_reward_bias": bias_gates(load_tiny_reward(directory), samples),
        "reward_zero_shot": reward_zero_shot(reward, data.images, data.scenes, 50),
        "srp_pair_accuracy": {
            f: srp_pair_accuracy(reward, pairs, f) for f in ("style", "lighting")
        },
    }
    entry["failures"] = bias_failures(entry["bias"])
    entry["passed"] = not entry["failures"]
    manifest = read_manifest(directory)
    manifest[COMPONENT] = entry
    write_json_atomic(directory / MANIFEST, manifest)
    return entry
