"""Rewards behind one protocol, and the SRP reward built on them.

Dual encoders (``tiny``, ``hpsv2``, ``pickscore``, ``clip``) score with embeddings; scorers
with a head (``hpsv3``, ``imagereward``, ``aesthetic``) only score; ``http`` is reward-only
(no gradient: GRPO and the monitors take it, the gradient methods refuse it). A spec such as
``"0.7*hpsv2.1+0.3*aesthetic"`` names a weighted sum of rewards, each normalised by its
running statistics (:mod:`srpo.rewards.multi`).
"""

from __future__ import annotations

from pathlib import Path

from srpo.rewards.base import (
    ImagePreprocess,
    Reward,
    RewardModel,
    ScoringReward,
    TextImageReward,
    check_pixels,
    check_reward_for_method,
    is_differentiable,
    srp_form,
)

REWARD_NAMES = (
    "tiny",
    "tiny-biased",
    "hpsv2.1",
    "hpsv2",
    "pickscore",
    "clip",
    "hpsv3",
    "imagereward",
    "aesthetic",
    "http",
)


def _in_folder(path: Path, names: tuple[str, ...], suffixes: tuple[str, ...]) -> Path:
    """The checkpoint file inside a folder: one of ``names``, else the only file of a suffix."""
    for name in names:
        if (path / name).is_file():
            return path / name
    found = sorted(p for p in path.iterdir() if p.suffix in suffixes and p.is_file())
    if len(found) == 1:
        return found[0]
    raise FileNotFoundError(
        f"no checkpoint in {path}: expected {' or '.join(names)}"
        + (f" (found {', '.join(p.name for p in found)})" if found else "")
    )


def load_reward(name: str, path: str | Path | None = None) -> Reward:
    """Load a frozen reward by name (or a weighted spec); ``path`` overrides its weights.

    ``hpsv2``/``hpsv2.1``: an HPS checkpoint file (local or hub file name);
    ``pickscore``/``clip``: a transformers CLIP folder or hub id; ``tiny``: the tiny world's
    shipped reward (or a weights folder); ``tiny-biased``: its twin with a known bias (a
    cool, blue/cyan cast raises its score whatever the caption); ``hpsv3``: an ``HPSv3.safetensors``
    file, or a Qwen2-VL base folder holding it; ``imagereward``: an ``ImageReward.pt`` file,
    or a folder holding it and BERT's tokenizer; ``aesthetic``: the head's file, or a CLIP
    folder holding it; ``http`` (or an ``http(s)://`` URL as the name): a JSON scoring
    service at ``path``. A spec ``"0.7*hpsv2.1+0.3*pickscore@/weights/pick"`` takes each
    component's path after ``@``.
    """
    from srpo.rewards.multi import is_spec

    if is_spec(name):
        if path is not None:
            raise ValueError(
                "a weighted reward takes each component's path in its spec (name@path)"
            )
        from srpo.rewards.multi import load_weighted_reward

        return load_weighted_reward(name)
    if name.lower().startswith(("http://", "https://")):
        name, path = "http", name
    key = name.lower()
    if key in ("tiny", "tiny-biased"):
        from srpo.rewards.tiny import load_tiny_reward
        from srpo.tiny_world.weights import WEIGHTS_DIR

        return load_tiny_reward(path or WEIGHTS_DIR, biased=key == "tiny-biased")
    if key in ("hpsv2", "hpsv2.1", "hps"):
        from srpo.rewards.hps import HPS_FILES, HPSReward

        file = path or HPS_FILES["hpsv2" if key == "hpsv2" else "hpsv2.1"]
        return HPSReward.from_checkpoint(file, name=key)
    if key == "pickscore":
        from srpo.rewards.clip import PICKSCORE_MODEL, PICKSCORE_PROCESSOR, CLIPReward

        processor = None if path else PICKSCORE_PROCESSOR
        return CLIPReward.from_pretrained(
            path or PICKSCORE_MODEL, processor, scale_by_logit=True, name="pickscore"
        )
    if key == "clip":
        from srpo.rewards.clip import CLIP_MODEL, CLIPReward

        return CLIPReward.from_pretrained(path or CLIP_MODEL, name="clip")
    if key == "hpsv3":
        from srpo.rewards.hpsv3 import HPSV3_BASE, HPSV3_FILE, HPSv3Reward

        if path is not None and Path(path).is_dir():
            file = _in_folder(Path(path), (HPSV3_FILE,), (".safetensors", ".pt", ".pth"))
            return HPSv3Reward.from_checkpoint(file, base=path)
        return HPSv3Reward.from_checkpoint(path or HPSV3_FILE, base=HPSV3_BASE)
    if key == "imagereward":
        from srpo.rewards.imagereward import IMAGEREWARD_FILE, IMAGEREWARD_TOKENIZER, ImageReward

        if path is not None and Path(path).is_dir():
            file = _in_folder(Path(path), (IMAGEREWARD_FILE,), (".pt", ".pth", ".safetensors"))
            return ImageReward.from_checkpoint(file, tokenizer=path)
        return ImageReward.from_checkpoint(path or IMAGEREWARD_FILE, IMAGEREWARD_TOKENIZER)
    if key == "aesthetic":
        from srpo.rewards.aesthetic import AESTHETIC_CLIP, AESTHETIC_FILE, AestheticReward

        if path is not None and Path(path).is_dir():
            file = _in_folder(Path(path), (AESTHETIC_FILE,), (".pth", ".pt"))
            return AestheticReward.from_pretrained(file, clip=path)
        return AestheticReward.from_pretrained(path or AESTHETIC_FILE, AESTHETIC_CLIP)
    if key == "http":
        from srpo.rewards.remote import HTTPReward

        if path is None:
            raise ValueError("reward 'http' needs the scoring service's URL as its path")
        return HTTPReward(str(path))
    raise ValueError(f"unknown reward {name!r}; choose one of {', '.join(REWARD_NAMES)}")


__all__ = [
    "REWARD_NAMES",
    "ImagePreprocess",
    "Reward",
    "RewardModel",
    "ScoringReward",
    "TextImageReward",
    "check_pixels",
    "check_reward_for_method",
    "is_differentiable",
    "load_reward",
    "srp_form",
]
