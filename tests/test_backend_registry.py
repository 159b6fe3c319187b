"""The backend registry: ``srpo models --json`` and ``srpo bench step --model NAME``."""

import json

import pytest

from srpo.benchmarks.step import bench_step
from srpo.cli import main
from srpo.models import MODEL_NAMES, load_generator, sampling_defaults


def test_models_json_lists_every_backend(capsys):
    assert main(["models", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert {"flux", "flux2", "qwen-image", "sd3", "z-image"} <= set(rows)
    assert rows["sd3"]["pipeline"] == "StableDiffusion3Pipeline"
    assert rows["qwen-image"]["available"] and "qwen-image" in MODEL_NAMES
    assert sampling_defaults("sd3") == rows["sd3"]["sampling"]


def test_unavailable_or_unknown_backends_are_refused_clearly():
    for name in ("sdxl", *(n for n in ("flux2",) if n not in MODEL_NAMES)):
        with pytest.raises(ValueError, match="unknown model"):
            load_generator(name)


@pytest.mark.parametrize("model", ["sd3"])
def test_bench_step_runs_on_a_backends_small_config(model):
    result = bench_step(repeats=1, warmup=0, batch=2, model=model)
    assert result["model"] == model and result["update_seconds"] > 0
    assert abs(result["ratio"] - result["update_seconds"] / result["bare_seconds"]) < 0.01
