"""The tiny world's reward: a CLIP dual encoder trained on the world, behind CLIPReward."""

from __future__ import annotations

from pathlib import Path

from transformers import CLIPConfig, CLIPModel

from srpo.rewards.clip import CLIPReward
from srpo.tiny_world.models import tokenizer
from srpo.tiny_world.weights import WEIGHTS_DIR, load_component, read_manifest


def load_tiny_reward(directory: str | Path = WEIGHTS_DIR, biased: bool = False) -> CLIPReward:
    """Load the shipped (or a freshly trained) tiny reward; scores are cosines.

    ``biased``: ``tiny-biased``, the same reward fine-tuned on preference pairs whose raters
    favour a cool, blue/cyan cast (:mod:`srpo.tiny_world.biased`).
    """
    directory = Path(directory)
    configs = read_manifest(directory)["configs"]
    component = "reward_biased" if biased else "reward"
    model = load_component(CLIPModel(CLIPConfig(**configs["reward"])), component, directory)
    preprocess = configs["reward_preprocess"]
    size = configs["reward"]["vision_config"]["image_size"]
    name = "tiny-biased" if biased else "tiny"
    return CLIPReward(model, tokenizer(), preprocess["mean"], preprocess["std"], size, name=name)
