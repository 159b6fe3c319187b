"""The trainer on a briefly trained tiny world: LoRA and full, checkpoints, resume, cancel."""

import pytest
import torch
from safetensors.torch import load_file

from srpo.checkpoints import LORA_FILE, latest_checkpoint
from srpo.config import make_config
from srpo.train import Callback, train


def config(world, **overrides):
    data = {
        "model_path": str(world),
        "reward_path": str(world),
        "prompts": ["a red circle", "a blue square on a white background"],
        "positive_words": ["photo"],
        "negative_words": ["painting"],
        "rollout_steps": 3,
        "shift": 1.0,
        "direct_align": {"sigma_range": [0.3, 0.9], "d": 0.05},
        "batch_size": 2,
        "steps": 4,
        "checkpoint_every": 2,
        "optimizer": {"lr": 1e-3},
        "lora": {"rank": 4, "alpha": 4},
    }
    return make_config({**data, **overrides})


def lora_weights(output):
    return load_file(str(latest_checkpoint(output).path / LORA_FILE))


def test_lora_run_checkpoints_and_changes_weights(smoke_world, tmp_path):
    result = train(config(smoke_world), tmp_path / "run")
    assert result.step == 4 and not result.cancelled
    checkpoint = latest_checkpoint(tmp_path / "run")
    assert checkpoint.step == 4 and checkpoint.format == "lora"
    weights = lora_weights(tmp_path / "run")
    assert all(k.startswith("transformer.") for k in weights)
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())
    assert set(checkpoint.manifest["files"]) >= {LORA_FILE, "optimizer.pt", "rng.pt"}
    assert checkpoint.manifest["control_words"] == {"positive": ["photo"], "negative": ["painting"]}


def test_interrupted_and_resumed_run_matches_uninterrupted(smoke_world, tmp_path):
    train(config(smoke_world), tmp_path / "straight")
    train(config(smoke_world, steps=2), tmp_path / "resumed")
    assert latest_checkpoint(tmp_path / "resumed").step == 2
    train(config(smoke_world), tmp_path / "resumed")
    straight, resumed = lora_weights(tmp_path / "straight"), lora_weights(tmp_path / "resumed")
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.allclose(straight[key], resumed[key], atol=1e-6), key


class CancelAfter(Callback):
    def __init__(self, steps):
        self.steps, self.seen = steps, []

    def on_progress(self, progress):
        self.seen.append(progress)

    def should_cancel(self):
        return len(self.seen) >= self.steps


def test_cancel_saves_a_checkpoint_and_stops(smoke_world, tmp_path):
    callback = CancelAfter(1)
    result = train(config(smoke_world, steps=10), tmp_path / "run", callbacks=[callback])
    assert result.cancelled and result.step == 1
    assert latest_checkpoint(tmp_path / "run").step == 1
    progress = callback.seen[0]
    assert progress.step == 1 and progress.total == 10 and progress.seconds_per_step > 0
    # nine updates and the checkpoint saves still to come, at least
    assert progress.eta_seconds > 0


def test_full_fine_tune_writes_a_diffusers_transformer_folder(smoke_world, tmp_path):
    train(config(smoke_world, lora=None, steps=2), tmp_path / "full")
    checkpoint = latest_checkpoint(tmp_path / "full")
    assert checkpoint.format == "full"
    assert (checkpoint.path / "transformer" / "config.json").is_file()
    assert any(name.endswith(".safetensors") for name in checkpoint.manifest["files"])


def test_crash_during_save_leaves_previous_checkpoint(smoke_world, tmp_path):
    train(config(smoke_world, steps=2), tmp_path / "run")
    parent = tmp_path / "run" / "checkpoints"
    partial = parent / "step-000004"
    partial.mkdir()
    (partial / "manifest.json").write_text("{")
    (parent / ".step-000006.tmp").mkdir()
    assert latest_checkpoint(tmp_path / "run").step == 2


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"optimizer": {"lr": -1}}, "optimizer.lr"),
        ({"prompts": []}, "prompts"),
        ({"method": "dpo"}, "method"),
        ({"direct_align": {"sigma_range": [0.5, 1.2]}}, "sigma_range"),
        ({"direct_align": {"d": 0.4, "sigma_range": [0.3, 0.5]}}, "too large"),
        ({"positive_words": []}, "positive_words"),
    ],
)
def test_cli_rejects_invalid_configs_without_creating_output(tmp_path, fields, message):
    import subprocess
    import sys

    import yaml

    data = {"prompts": ["a red circle"], "positive_words": ["photo"], "negative_words": ["flat"]}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**data, **fields}))
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "srpo.cli",
            "train",
            str(tmp_path / "bad.yaml"),
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert (
        result.stderr.startswith("srpo: error: invalid training config")
        and message in result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_kill_9_mid_run_then_rerun_matches_uninterrupted(smoke_world, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    cfg = config(smoke_world, steps=30, checkpoint_every=1)
    path = tmp_path / "run.yaml"
    path.write_text(cfg.to_yaml())
    train(cfg, tmp_path / "straight")
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "srpo.cli", "train", str(path), "--output", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        checkpoint = latest_checkpoint(out)
        if checkpoint is not None and checkpoint.step >= 3:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = latest_checkpoint(out).step
    assert 3 <= killed_at < 30, "the run was not interrupted mid-way"
    rerun = subprocess.run(command, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert latest_checkpoint(out).step == 30
    straight, resumed = lora_weights(tmp_path / "straight"), lora_weights(out)
    for key in straight:
        assert torch.allclose(straight[key], resumed[key], atol=1e-6), key
