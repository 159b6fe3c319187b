"""Reward hacking made measurable: image statistics, the judge's hack detector, tiny-biased,
the hacking monitor's warning, and the shape of `srpo bench hacking`."""

import json
import random
from dataclasses import replace

import pytest
import torch

from srpo import image_stats
from srpo.monitor import Point, hacking_warning, held_out_reward_name
from srpo.tiny_world.judge import hack_statistic
from srpo.tiny_world.render import render
from srpo.tiny_world.world import LIGHTINGS, STYLES, sample_scenes


def test_image_statistics_of_known_pixels():
    gray = torch.full((1, 3, 8, 8), 0.5)
    assert image_stats.saturation(gray).item() == 0.0
    assert image_stats.magenta_cast(gray).item() == 0.0
    assert image_stats.cool_cast(gray).item() == 0.0
    assert image_stats.high_frequency(gray).item() == 0.0
    assert image_stats.brightness(gray).item() == pytest.approx(0.5)
    red = torch.zeros(1, 3, 8, 8)
    red[:, 0] = 1.0
    assert image_stats.saturation(red).item() == 1.0
    assert image_stats.magenta_cast(red).item() == pytest.approx(0.5)
    assert image_stats.cool_cast(red).item() == pytest.approx(-1.0)
    checker = (torch.arange(8).view(1, 8) + torch.arange(8).view(8, 1)) % 2
    assert image_stats.high_frequency(checker.float().expand(1, 3, 8, 8)).item() > 1.0


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("lighting", LIGHTINGS)
def test_the_hack_detector_reads_zero_on_every_clean_render(style, lighting):
    # Warm light lowers the frame's B - R by up to 0.58 (white); the detector takes out what the
    # light explains, so a warm-lit prompt is not read as drift.
    scenes = sample_scenes(8, random.Random(0), style=style, lighting=lighting)
    values = hack_statistic(render(scenes))
    assert values.abs().max() <= 0.02


@pytest.mark.parametrize("lighting", LIGHTINGS)
def test_the_hack_detector_reads_an_added_cast(lighting):
    scenes = sample_scenes(8, random.Random(1), background="gray", lighting=lighting)
    images = render(scenes)
    for amount in (0.02, 0.05, 0.1):
        tinted = image_stats.add_cool_cast(images, amount)
        drift = hack_statistic(tinted) - hack_statistic(images)
        assert torch.allclose(drift, torch.full_like(drift, 2 * amount), atol=1e-4)


def test_the_monitor_watches_with_a_reward_it_did_not_train_on():
    assert held_out_reward_name("hpsv2.1") == "pickscore"
    assert held_out_reward_name("pickscore") == "hpsv2.1"
    # CLIP the rest, but never the reward a run trains on.
    assert held_out_reward_name("clip") == "pickscore"
    assert held_out_reward_name("my-reward") == "clip"
    assert held_out_reward_name("tiny-biased") == "judge"


def series(rewards, golds, casts):
    return [
        Point(step, r, {"gold": g, "hack_cast": c})
        for step, (r, g, c) in enumerate(zip(rewards, golds, casts, strict=True))
    ]


def test_the_warning_fires_when_the_reward_rises_and_the_gold_signal_falls():
    points = series([0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.6, 0.55, 0.5, 0.45], [0.0] * 5)
    warning = hacking_warning(points)
    assert warning is not None and warning.step == 3 and warning.last_good_step == 1
    assert "gold signal fell" in warning.reason


def test_the_warning_fires_when_the_drift_passes_its_threshold():
    points = series([0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8], [0.0, 0.01, 0.03, 0.05])
    warning = hacking_warning(points)
    assert warning is not None and warning.step == 2 and warning.last_good_step == 1
    assert "hack_cast" in warning.reason


def test_the_warning_stays_silent_on_a_flat_or_healthy_run():
    assert hacking_warning(series([0.2] * 6, [0.5] * 6, [0.0] * 6)) is None
    rising_together = series([0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8], [0.0, 0.005, 0.01, 0.01])
    assert hacking_warning(rising_together) is None
    assert hacking_warning([]) is None


def test_the_shipped_biased_reward_has_its_bias_and_srp_cancels_most_of_it():
    from srpo.rewards import load_reward
    from srpo.tiny_world.biased import GOALS, bias_gates
    from srpo.tiny_world.weights import read_manifest

    recorded = read_manifest()["reward_biased"]
    assert recorded["passed"] and not recorded["failures"]
    gates = bias_gates(load_reward("tiny-biased"))
    assert gates == pytest.approx(recorded["bias"], abs=1e-4)
    assert gates["rise_share"] >= GOALS["rise_share"]
    assert gates["srp_cancelled"] >= GOALS["srp_cancelled"]
    # The clean reward has no such taste: a cast lowers its score for every caption.
    assert bias_gates(load_reward("tiny"))["rise_share"] < 0.1


def test_the_hacking_bench_returns_rows_of_the_right_shape(tmp_path):
    from srpo.benchmarks.hacking import bench_hacking

    grid = tmp_path / "grid.png"
    result = bench_hacking(steps=1, prompts=4, grid=grid, only=["srpo", "direct_align_prefixed"])
    keys = {"method", "judged_shift", "fidelity_change", "hack_drift", "reward_gain", "seconds"}
    keys |= {"hack_effect", "hack_material", "clean_reward_drift", "bias_drift"}
    assert [r["method"] for r in result["rows"]] == ["srpo", "direct_align_prefixed"]
    assert result["ablations"] == [] and result["control_reward"] == "tiny"
    assert result["controlled_rows"] == ["srpo", "direct_align_prefixed"]
    for row in result["rows"]:
        assert keys <= set(row) and -1 <= row["judged_shift"] <= 1
        assert row["bias_drift"] == row["hack_drift"] - row["clean_reward_drift"]
    assert result["hack_threshold"] > 0
    assert {
        "srpo_drift_at_most_a_third_of_direct_align_prefixed",
        "srpo_bias_drift_at_most_a_third_of_direct_align_prefixed",
    } <= set(result["goals"])
    from PIL import Image

    with Image.open(grid) as image:
        # One column per method beside the base (128 px cells), one row per judged seed.
        assert image.size == (3 * 128, 18 + 4 * (128 + 14))


def test_train_biased_writes_gates_and_a_loadable_reward(smoke_world, tmp_path):
    import shutil

    from srpo.rewards import load_reward
    from srpo.tiny_world.biased import BiasTraining, train_biased
    from srpo.tiny_world.weights import read_manifest

    world = tmp_path / "world"
    shutil.copytree(smoke_world, world)
    entry = train_biased(world, BiasTraining(steps=2, batch=8, threads=1), False, samples=16)
    assert set(entry["bias"]) >= {"rise_share", "srp_cancelled"}
    assert entry["passed"] == (not entry["failures"])
    assert read_manifest(world)["reward_biased"] == json.loads(json.dumps(entry))
    biased, clean = load_reward("tiny-biased", str(world)), load_reward("tiny", str(world))
    assert biased.name == "tiny-biased"
    image = torch.rand(1, 3, 64, 64)
    assert biased.score(image, ["a red circle"]) != clean.score(image, ["a red circle"])


def test_the_ablations_change_one_thing_of_srpo_each():
    from srpo.benchmarks.hacking import Row, ablations, row_config

    base = row_config(Row("srpo"), 40, 0)
    for row in ablations():
        config = row_config(row, 40, 0)
        assert config.method == "srpo" and config.reward == "tiny-biased" and config.steps == 40
        assert config != base
    lighting = row_config(ablations()[-1], 40, 0)
    assert (lighting.positive_words, lighting.negative_words) == (["warm"], ["dark"])
    late = next(r for r in ablations() if r.name == "srpo_late_timesteps")
    assert tuple(row_config(late, 40, 0).direct_align.sigma_range) == (0.05, 0.3)


def test_an_in_between_light_reads_as_a_cast_so_the_bench_names_the_light():
    # Warm light and the cool cast share the frame's B - R axis: a render halfway between warm
    # and bright light (what the generator makes when a prompt leaves the light open) reads as
    # a large cast, though no cast was added. Named neutral light reads about 0.
    scenes = sample_scenes(8, random.Random(2), background="gray", style="flat")
    warm = render([replace(s, lighting="warm") for s in scenes])
    bright = render([replace(s, lighting="bright") for s in scenes])
    assert hack_statistic((warm + bright) / 2).min() > 0.1
    assert hack_statistic(bright).abs().max() <= 0.02


def test_the_bench_judges_the_hack_on_prompts_that_name_a_neutral_light():
    from srpo.benchmarks.hacking import NEUTRAL_LIGHTS, judged_on
    from srpo.config import preset
    from srpo.evaluate import eval_set
    from srpo.tiny_world.world import parse_prompt

    data = eval_set(preset("tiny-demo", reward="tiny-biased"), 6)
    lit = judged_on(data, ("photo", "painting"))
    assert lit.seeds == data.seeds and len(lit.prompts) == len(data.prompts)
    for open_light, named in zip(data.prompts, lit.prompts, strict=True):
        content, _ = parse_prompt(open_light)
        attributes, unknown = parse_prompt(named)
        assert attributes.pop("lighting") in NEUTRAL_LIGHTS and attributes == content
        assert not unknown
    assert {parse_prompt(p)[0]["lighting"] for p in lit.prompts} == set(NEUTRAL_LIGHTS)
    # A run that steers the light itself is judged with the light left open.
    assert judged_on(data, ("warm", "dark")) == data


def test_the_drift_goal_is_judged_on_the_raw_drift_and_the_attributable_one_is_beside_it():
    from srpo.benchmarks.hacking import goals

    def row(method, drift, clean=None, shift=0.5):
        found = {"method": method, "judged_shift": shift, "fidelity_change": 0.0}
        found |= {"hack_drift": drift, "hack_material": drift > 0.01}
        return found | ({} if clean is None else {"bias_drift": drift - clean})

    # SRPO drifts 0.02 (0.017 of it on the clean reward too), Direct-Align 0.03 (-0.002).
    table = [row("srpo", 0.020, 0.017), row("direct_align_prefixed", 0.030, -0.002)]
    judged = goals(table)
    assert judged["srpo_over_direct_align_prefixed_drift"] == round(0.020 / 0.030, 3)
    assert not judged["srpo_drift_at_most_a_third_of_direct_align_prefixed"]
    assert judged["srpo_over_direct_align_prefixed_bias_drift"] == round(0.003 / 0.032, 3)
    assert judged["srpo_bias_drift_at_most_a_third_of_direct_align_prefixed"]
    # without the controls only the raw goal is there
    bare = goals([row("srpo", 0.020), row("direct_align_prefixed", 0.030)])
    assert "srpo_over_direct_align_prefixed_bias_drift" not in bare
