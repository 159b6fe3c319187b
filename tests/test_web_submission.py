"""One submission path: the Train form, the REST API and ``srpo train`` turn the same preset
and overrides into the same stored config (``srpo.config.preset``'s deep merge; the
preset's own ``sample_every``), and a nested override keeps the preset's other fields."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from fastapi.testclient import TestClient

from app.core.models import Job, Role
from app.web.factory import create_app
from app.web.ui import train, train_setup
from srpo.config import PRESETS, deep_merge
from tests.web_support import add_account, web_settings

ROOT = Path(__file__).resolve().parent.parent
# Cheap to train, and nested (the optimiser's lr alone): what a user overrides.
OVERRIDES = {
    "steps": 1,
    "batch_size": 1,
    "rollout_steps": 2,
    "checkpoint_every": 1,
    "optimizer": {"lr": 1e-5},
}


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submission")
    app = create_app(web_settings(folder))
    trainer = add_account(app.state.studio.db, "tess", Role.TRAINER)
    with TestClient(app) as client:
        yield SimpleNamespace(
            app=app, studio=app.state.studio, api=client, trainer=trainer, folder=folder
        )


def stored_config(studio, job_id: int) -> dict:
    with studio.db.session() as session:
        return session.get(Job, job_id).config


def api_job(ctx, body: dict) -> dict:
    made = ctx.api.post("/api/v1/jobs", json=body, headers=ctx.trainer.headers)
    assert made.status_code in (201, 503), made.text
    return stored_config(ctx.studio, made.json()["id"])


def form_job(ctx, preset: str, overrides: dict) -> dict:
    """Submit through the Train tab's handler: the form as ``preset`` fills it, then the
    user's changes (nested ones typed into the YAML box, the rest in the quick fields)."""
    advanced, positive, negative, prompts, *quick = train.form_values(train.preset_config(preset))
    fields = yaml.safe_load(advanced)
    for key, value in overrides.items():
        if key not in train.QUICK:
            fields[key] = value
    quick = [overrides.get(name, shown) for name, shown in zip(train.QUICK, quick, strict=True)]
    request = SimpleNamespace(username=ctx.trainer.username)
    message, _, chosen = train.submit(
        ctx.studio,
        preset,
        "form job",
        yaml.safe_dump(fields),
        positive,
        negative,
        prompts,
        *quick,
        request,
    )
    assert "Queued job" in message or "not yet queued" in message, message
    return stored_config(ctx.studio, chosen["value"])


def cli_config(folder: Path, preset: str, overrides: dict) -> dict:
    """Run ``srpo train`` on a YAML file of the preset with the overrides; the config the run
    records in its checkpoint's manifest."""
    path = folder / "cli.yaml"
    path.write_text(yaml.safe_dump(deep_merge(PRESETS[preset], overrides)), encoding="utf-8")
    output = folder / "cli-run"
    done = subprocess.run(
        [sys.executable, "-m", "srpo.cli", "train", str(path), "--output", str(output)],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = output / "checkpoints" / "step-000001" / "manifest.json"
    return json.loads(manifest.read_text())["config"]


@pytest.mark.slow
def test_the_form_the_api_and_the_cli_store_the_same_config(studio) -> None:
    from_form = form_job(studio, "tiny-demo", OVERRIDES)
    from_api = api_job(studio, {"preset": "tiny-demo", "config": OVERRIDES})
    from_cli = cli_config(studio.folder, "tiny-demo", OVERRIDES)
    assert from_form == from_api
    assert from_cli == from_api
    assert from_api["sample_every"] == 10  # the preset's own, the same on every path


def test_a_tiny_demo_job_over_the_api_renders_sample_grids(studio) -> None:
    config = api_job(studio, {"preset": "tiny-demo", "config": {}})
    assert config["sample_every"] == PRESETS["tiny-demo"]["sample_every"] == 10


def test_overriding_only_the_learning_rate_keeps_the_presets_grad_clip(studio) -> None:
    config = api_job(studio, {"preset": "tiny-demo", "config": {"optimizer": {"lr": 1e-5}}})
    preset = PRESETS["tiny-demo"]["optimizer"]
    assert config["optimizer"]["lr"] == 1e-5
    assert config["optimizer"]["grad_clip"] == preset["grad_clip"] == 1.0
    assert config["optimizer"]["weight_decay"] == preset["weight_decay"]
    form = form_job(studio, "tiny-demo", {"optimizer": {"lr": 1e-5}})
    assert form["optimizer"] == config["optimizer"]


def test_a_nested_method_section_merges_deeply_over_the_api(studio) -> None:
    config = api_job(studio, {"preset": "tiny-demo", "config": {"direct_align": {"d": 0.03}}})
    assert config["direct_align"]["d"] == 0.03
    assert (
        config["direct_align"]["sigma_range"] == PRESETS["tiny-demo"]["direct_align"]["sigma_range"]
    )


def test_an_unknown_preset_is_refused_and_nothing_is_stored(studio) -> None:
    with studio.studio.db.session() as session:
        before = session.query(Job).count()
    refused = studio.api.post(
        "/api/v1/jobs", json={"preset": "flux-pro", "config": {}}, headers=studio.trainer.headers
    )
    assert refused.status_code == 400 and "unknown 'flux-pro'" in refused.json()["detail"]
    with studio.studio.db.session() as session:
        assert session.query(Job).count() == before


def test_the_api_takes_the_launcher_workers_and_nodes(studio) -> None:
    body = {"preset": "tiny-demo", "config": OVERRIDES, "num_workers": 2, "launcher": "local"}
    stored = api_job(studio, body)
    assert (stored["launcher"], stored["num_workers"], stored["nodes"]) == ("local", 2, None)
    refusals = {  # this studio has no Ray cluster; only ray spans nodes
        "launcher: this studio has no Ray cluster": {"launcher": "ray", "num_workers": 2},
        "only the ray launcher spans nodes": {"num_workers": 2, "nodes": 2},
        "launcher": {"launcher": "slurm"},
    }
    for reason, fields in refusals.items():
        made = studio.api.post(
            "/api/v1/jobs", json={"preset": "tiny-demo", **fields}, headers=studio.trainer.headers
        )
        assert 400 <= made.status_code < 500 and reason in made.text, (fields, made.text)


def test_the_form_writes_its_launch_fields_into_the_config_it_submits(studio) -> None:
    request = SimpleNamespace(username=studio.trainer.username)
    advanced = yaml.safe_dump(OVERRIDES)
    written = train_setup.set_launch(studio.studio, advanced, "local", 2, None, request)
    assert yaml.safe_load(written) == {**OVERRIDES, "launcher": "local", "num_workers": 2}
    assert form_job(studio, "tiny-demo", yaml.safe_load(written))["num_workers"] == 2
    paper = train_setup.preset_launch(studio.studio, "flux-paper-32gpu", request)
    assert paper == ("ray", 32, None)
    cleared = train_setup.set_launch(studio.studio, written, "local", None, None, request)
    assert "num_workers" not in yaml.safe_load(cleared)


def test_the_job_view_names_the_nodes_that_run_the_job() -> None:
    ranks = [
        {"rank": 1, "node": "b", "host": "gpu-2", "ip": "10.0.0.2", "pid": 7},
        {"rank": 0, "node": "a", "host": "gpu-1", "ip": "10.0.0.1", "pid": 5},
    ]
    row = {
        **dict.fromkeys(("queue_position", "eta_seconds", "error", "dispatch_error")),
        **{"id": 3, "name": "paper", "state": "running", "step": 1, "total_steps": 20},
        **{"progress": 0.05, "launcher": "ray", "num_workers": 2, "nodes": ranks},
    }
    shown = train.progress_html(row)
    assert "ray launcher, 2 worker(s): rank 0 on gpu-1 (10.0.0.1), rank 1 on gpu-2" in shown
