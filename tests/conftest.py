"""Tests never touch the network: the hubs are switched offline before anything imports them."""

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def smoke_world(tmp_path_factory):
    """A tiny world trained for a few steps: real weights and manifest, in seconds."""
    from srpo.tiny_world.training import WorldTraining, train_world

    directory = tmp_path_factory.mktemp("tiny")
    steps = {"vae_steps": 3, "reward_steps": 3, "text_steps": 3, "generator_steps": 3}
    train_world(directory, WorldTraining(**steps, generator_pool=256), show=False)
    return directory
