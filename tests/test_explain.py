"""`srpo explain`: what a config will do, read before any GPU time is spent."""

import json

import pytest

from srpo.cli import main
from srpo.config import preset
from srpo.explain import explain, explain_markdown
from srpo.train import build_models, prepare_trainable

KEYS = {
    "sigma_window",
    "d",
    "discount",
    "control_words",
    "guidance",
    "precision",
    "trainable_parameters",
    "effective_batch",
    "updates_per_checkpoint",
}


def test_paper_preset_summary(capsys):
    assert main(["explain", "flux-paper-32gpu", "--processes", "32", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary.keys() >= KEYS
    assert summary["sigma_window"] == [0.75, 0.96] and summary["d"] == 0.022
    den, inv = summary["discount"]["denoise"], summary["discount"]["inversion"]
    assert (den["low"], den["high"], inv["low"], inv["high"]) == (0.1, 0.25, 0.3, 0.01)
    assert den["mid"] == pytest.approx(0.175) and inv["mid"] == pytest.approx(0.155)
    assert len(summary["control_words"]) == 10
    assert summary["control_words"][:2] == [
        ["Natural-lighting", "Concept art"],
        ["Detail", "Painting"],
    ]
    assert summary["guidance"] == {"rollout": 1.0, "train": 3.5}
    precision = summary["precision"]
    assert (precision["trainable"], precision["frozen"], precision["flow_math"]) == (
        "float32",
        "bfloat16",
        "float32",
    )
    assert summary["effective_batch"] == 32 and summary["updates_per_checkpoint"] == 10


@pytest.mark.parametrize("lora", [None, {"rank": 4, "alpha": 8}])
def test_trainable_parameter_count_matches_the_loaded_model(smoke_world, lora):
    config = preset(
        "tiny-demo", model_path=str(smoke_world), reward_path=str(smoke_world), lora=lora
    )
    generator, _ = build_models(config)
    trained = sum(p.numel() for p in prepare_trainable(generator, config))
    assert explain(config)["trainable_parameters"] == trained


def test_baselines_show_their_reward_text_and_no_words():
    summary = explain(preset("flux-paper-32gpu", method="grpo"))
    assert summary["control_words"] == [] and summary["reward_text"] == "r(p)"
    assert summary["optimizer"]["lr"] == 1e-5 and summary["images_per_update"] == 12
    assert "r(p)" in explain_markdown(summary)


def test_unknown_config_is_a_one_line_error(tmp_path, capsys):
    assert main(["explain", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("srpo: error:") and "\n" not in err
