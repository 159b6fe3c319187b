"""`srpo eval` and `srpo sample --checkpoint`: a fine-tune against its base on held-out prompts."""

import json
import random
import threading

import numpy
import pytest
import torch
from PIL import Image

from srpo.checkpoints import latest_checkpoint
from srpo.cli import main
from srpo.evaluate import (
    EvalSet,
    attribute_of,
    eval_set,
    judged_rates,
    measure,
    tiny_heldout_prompts,
)
from srpo.models.tiny import load_tiny_generator
from srpo.rewards.tiny import load_tiny_reward
from srpo.tiny_world.render import render
from srpo.tiny_world.world import parse_prompt, sample_scenes
from srpo.train import train
from tests.test_train import config


@pytest.fixture(scope="module")
def checkpoint(smoke_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(config(smoke_world, steps=2, optimizer={"lr": 5e-2}), out)
    return latest_checkpoint(out)


def test_control_words_map_to_judged_attributes():
    assert attribute_of("photo") == ("style", "photo")
    assert attribute_of("realistic photo") == ("style", "photo")
    assert attribute_of("dark") == ("lighting", "dark")
    assert attribute_of("zebra") is None


def test_heldout_prompts_name_content_only():
    prompts = tiny_heldout_prompts(20)
    assert len(set(prompts)) > 10
    for prompt in prompts:
        named, unknown = parse_prompt(prompt)
        assert "style" not in named and "lighting" not in named and not unknown


def test_judged_rates_on_rendered_scenes():
    scenes = sample_scenes(12, random.Random(0), style="photo")
    prompts = [f"a {s.colour} {s.shape}" for s in scenes]
    rates = judged_rates(render(scenes), prompts, "photo", "painting")
    assert rates["judged_positive_rate"] == 1.0
    assert rates["judged_negative_rate"] == 0.0
    assert rates["prompt_fidelity"] == 1.0
    wrong = [f"a {s.colour} {'square' if s.shape != 'square' else 'circle'}" for s in scenes]
    rates = judged_rates(render(scenes), wrong, None, None)
    assert set(rates) == {"prompt_fidelity", "hack_cast"} and rates["prompt_fidelity"] == 0.0
    assert abs(rates["hack_cast"]) <= 0.05


def test_eval_compares_the_checkpoint_with_its_base(smoke_world, checkpoint, capsys):
    assert main(["eval", "--checkpoint", str(checkpoint.path), "--prompts", "6", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["step"] == 2 and result["prompts"] == 6
    assert result["positive_word"] == "photo" and result["negative_word"] == "painting"
    base = measure(
        load_tiny_generator(smoke_world),
        load_tiny_reward(smoke_world),
        eval_set(checkpoint_config(checkpoint), 6),
        "photo",
        "painting",
        judged=True,
    )
    assert result["base"] == pytest.approx(base, abs=1e-5)
    assert result["heldout_words"] == ["Realistic photo", "CG Render"]
    assert result["base"]["sgp_heldout"] != pytest.approx(result["base"]["srp_reward"], abs=1e-6)
    assert result["finetuned"]["reward"] != pytest.approx(base["reward"], abs=1e-6)
    for key in ("judged_positive_rate", "judged_negative_rate", "prompt_fidelity"):
        assert 0.0 <= result["finetuned"][key] <= 1.0


def checkpoint_config(checkpoint):
    from srpo.config import make_config

    return make_config(checkpoint.manifest["config"])


def test_sample_from_a_checkpoint_differs_from_the_base(checkpoint, smoke_world, tmp_path):
    tuned, base = tmp_path / "tuned.png", tmp_path / "base.png"
    args = ["--prompt", "a red circle", "--seeds", "0-1", "--steps", "3"]
    assert main(["sample", "--checkpoint", str(checkpoint.path), *args, "--out", str(tuned)]) == 0
    assert main(["sample", "--path", str(smoke_world), *args, "--out", str(base)]) == 0
    tuned_pixels = torch.from_numpy(numpy.asarray(Image.open(tuned), dtype=numpy.float32))
    base_pixels = torch.from_numpy(numpy.asarray(Image.open(base), dtype=numpy.float32))
    assert tuned_pixels.shape == base_pixels.shape
    assert (tuned_pixels - base_pixels).abs().mean() > 0.1


def test_eval_of_a_folder_that_is_not_a_checkpoint_is_a_one_line_error(tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("srpo: error:") and "not a complete checkpoint" in err
    assert "\n" not in err


def test_demo_reports_judged_rates_before_and_after():
    from srpo.demo import run_demo

    result = run_demo(prompts=4, steps=1)
    assert result["steps"] == 1 and result["prompts"] == 4
    for key in ("judged_positive_rate", "prompt_fidelity"):
        before, after = result[f"{key}_before"], result[f"{key}_after"]
        assert 0.0 <= before <= 1.0 and 0.0 <= after <= 1.0
    assert result["srp_reward_after"] != result["srp_reward_before"]
    assert result["seconds"] >= result["train_seconds"] > 0


def test_measure_samples_on_single_threaded_workers_from_a_handler_thread(monkeypatch):
    """Issue 17: the Checkpoints tab evaluates in a Gradio handler thread, where torch's own
    OpenMP threads are slow; its images are sampled on srpo.cpu_sampling's workers."""
    generator, reward = load_tiny_generator(), load_tiny_reward()
    seen, sample = [], generator.sample

    def spy(cond, noise, *args, **kwargs):
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        return sample(cond, noise, *args, **kwargs)

    monkeypatch.setattr(generator, "sample", spy)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        found = []
        data = EvalSet(["a red circle", "a blue square"], [0, 1], 2, 1.0)
        handler = threading.Thread(target=lambda: found.append(measure(generator, reward, data)))
        handler.start()
        handler.join()
    finally:
        torch.set_num_threads(threads)
    assert sorted(seen) == [("srpo-sampler-0", 1), ("srpo-sampler-1", 1)]
    assert found[0]["images"] == 2
