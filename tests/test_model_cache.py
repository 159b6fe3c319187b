"""The studio's model cache: a base model is cached by its backend and folder, and rewards by
name and weights, so choosing another base or reward in the Reward Lab never returns the
previous one."""

from __future__ import annotations

from app.core.model_refs import ModelCache, ModelRef
from srpo.tiny_world.weights import WEIGHTS_DIR
from tests.web_support import web_settings


def test_bases_of_other_folders_and_rewards_of_other_names_are_other_models(tmp_path):
    cache = ModelCache(web_settings(tmp_path), keep=2)
    shipped = ModelRef("base", {"model": "tiny", "model_path": None})
    same_again = ModelRef("base", {"model": "tiny", "model_path": None})
    from_folder = ModelRef("base", {"model": "tiny", "model_path": str(WEIGHTS_DIR)})
    first = cache.generator(shipped)
    assert cache.generator(same_again) is first
    assert cache.generator(from_folder) is not first
    plain, biased = cache.reward("tiny"), cache.reward("tiny-biased")
    assert plain is not biased and cache.reward() is plain  # the studio's default: tiny
    assert cache.reward("tiny", str(WEIGHTS_DIR)) is not plain


def test_images_are_sampled_once_per_model_prompt_and_seeds(tmp_path):
    cache = ModelCache(web_settings(tmp_path), keep_images=2)
    base = ModelRef("base", {"model": "tiny", "model_path": None})
    calls = []

    def sample(tag):
        return lambda: calls.append(tag) or tag

    assert cache.images(base, "a red circle", [0, 1], sample("a")) == "a"
    assert cache.images(base, "a red circle", [0, 1], sample("again")) == "a"
    assert cache.images(base, "a red circle", [1, 0], sample("b")) == "b"  # seeds in order
    assert cache.images(base, "a blue square", [0, 1], sample("c")) == "c"
    other = ModelRef("checkpoint:3", {"model": "tiny", "model_path": None}, 3)
    assert cache.images(other, "a blue square", [0, 1], sample("d")) == "d"
    assert cache.images(base, "a red circle", [0, 1], sample("e")) == "e"  # dropped: 2 kept
    assert calls == ["a", "b", "c", "d", "e"]
