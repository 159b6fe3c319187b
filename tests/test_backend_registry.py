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
    assert set(rows) == set(MODEL_NAMES)
    assert rows["flux2"]["pipeline"] == "Flux2Pipeline"
    assert sampling_defaults("sd3") == rows["sd3"]["sampling"]


def test_unknown_backends_are_refused_clearly():
    with pytest.raises(ValueError, match="unknown model 'sdxl'; choose one of"):
        load_generator("sdxl")


def test_a_flux2_klein_folder_gets_its_own_sampling_defaults(tmp_path):
    (tmp_path / "model_index.json").write_text(
        json.dumps({"_class_name": "Flux2KleinPipeline", "is_distilled": True})
    )
    assert sampling_defaults("flux2", str(tmp_path))["steps"] == 4
    assert sampling_defaults("flux2")["steps"] == 50


@pytest.mark.parametrize("model", ["sd3", "flux2"])
def test_bench_step_runs_on_a_backends_small_config(model):
    result = bench_step(repeats=1, warmup=0, batch=2, model=model)
    assert result["model"] == model and result["update_seconds"] > 0
    assert abs(result["ratio"] - result["update_seconds"] / result["bare_seconds"]) < 0.01
    cpu = result["update_cpu_seconds"] / result["bare_cpu_seconds"]
    assert result["bare_cpu_seconds"] > 0 and abs(result["cpu_ratio"] - cpu) < 0.01
