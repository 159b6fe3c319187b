"""The tiny backends behind the shared protocols, on a briefly trained world (seconds)."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from srpo.direct_align import DirectAlignConfig
from srpo.models import load_generator
from srpo.models.flux import FluxGenerator
from srpo.rewards import load_reward
from srpo.rewards.clip import CLIPReward
from srpo.tiny_world.weights import WeightsError, read_manifest
from tests.factories import assert_only_transformer_trains, direct_align_step

PROMPTS = ["a red circle", "photo. a large blue square on a white background"]


def test_tiny_backends_are_the_shared_classes(smoke_world):
    generator = load_generator("tiny", str(smoke_world))
    reward = load_reward("tiny", smoke_world)
    assert isinstance(generator, FluxGenerator) and isinstance(reward, CLIPReward)
    assert generator.resolution == (64, 64) and generator.noise(2).shape == (2, 64, 32)
    manifest = read_manifest(smoke_world)
    assert set(manifest["files"]) == {"vae", "reward", "transformer", "text_encoder"}
    assert sum(f["bytes"] for f in manifest["files"].values()) < 25 * 2**20


def test_direct_align_step_through_tiny_world(smoke_world):
    generator = load_generator("tiny", str(smoke_world))
    reward = load_reward("tiny", smoke_world)
    settings = DirectAlignConfig()
    direct_align_step(generator, reward, settings, ("photo", "painting"), num_steps=2, shift=1.0)
    assert_only_transformer_trains(generator, reward)


def test_corrupt_and_missing_weights_name_the_file_and_sha(smoke_world, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in smoke_world.iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    expected = read_manifest(broken)["files"]["reward"]["sha256"]
    data = bytearray((broken / "reward.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (broken / "reward.safetensors").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=rf"reward\.safetensors.*expected {expected}"):
        load_reward("tiny", broken)
    (broken / "vae.safetensors").unlink()
    with pytest.raises(WeightsError, match=r"missing .*vae\.safetensors \(expected sha256"):
        load_generator("tiny", str(broken))
    with pytest.raises(WeightsError, match="manifest not found"):
        load_reward("tiny", tmp_path / "empty")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "srpo.cli", *args], capture_output=True, text=True)


def test_sample_cli_writes_a_labelled_grid(smoke_world, tmp_path):
    out = tmp_path / "grid.png"
    result = run_cli(
        "sample",
        "--model",
        "tiny",
        "--path",
        str(smoke_world),
        "--prompt",
        "a red circle",
        "--seeds",
        "0-2,5",
        "--steps",
        "2",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    grid = Image.open(out)
    assert grid.size == (4 * 128, 18 + 128 + 14)


def test_sample_cli_bad_seeds_is_one_line_error(smoke_world, tmp_path):
    result = run_cli("sample", "--path", str(smoke_world), "--prompt", "x", "--seeds", "7-2")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("srpo: error:") and "7-2" in result.stderr


def test_gates_on_untrained_weights_fail_with_reasons(smoke_world):
    result = run_cli("tiny-world", "gates", "--quick", "--json", "--weights", str(smoke_world))
    assert result.returncode == 1
    report = json.loads(result.stdout)
    for key in (
        "judge_accuracy",
        "vae_judge_drop",
        "reward_zero_shot",
        "srp_pair_accuracy",
        "generator_fidelity",
        "generator_style_follow",
        "generator_style_max_share_unprompted",
        "seconds",
    ):
        assert key in report
    assert not report["passed"] and any("reward_zero_shot" in f for f in report["failures"])
