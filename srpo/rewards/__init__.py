"""Text-conditioned rewards behind one protocol, and the SRP reward built on them."""

from __future__ import annotations

from pathlib import Path

from srpo.rewards.base import ImagePreprocess, RewardModel, TextImageReward, check_pixels

REWARD_NAMES = ("tiny", "tiny-biased", "hpsv2.1", "hpsv2", "pickscore", "clip")


def load_reward(name: str, path: str | Path | None = None) -> RewardModel:
    """Load a frozen reward by name; ``path`` overrides where its weights come from.

    ``hpsv2``/``hpsv2.1``: an HPS checkpoint file (local or hub file name);
    ``pickscore``/``clip``: a transformers CLIP folder or hub id; ``tiny``: the tiny world's
    shipped reward (or a weights folder); ``tiny-biased``: its twin with a known bias (a
    magenta cast raises its score whatever the caption).
    """
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
    raise ValueError(f"unknown reward {name!r}; choose one of {', '.join(REWARD_NAMES)}")


__all__ = [
    "REWARD_NAMES",
    "ImagePreprocess",
    "RewardModel",
    "TextImageReward",
    "check_pixels",
    "load_reward",
]
