"""The hacking monitor in the studio: the held-out choice, the series a job stores at every
sample step, the warning naming the last checkpoint before it (and its line in the job log),
the drift per checkpoint, and the REST API and the tabs that show them."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from fastapi.testclient import TestClient

from app.core import jobs, monitoring, reads
from app.core.models import Job, Role
from app.web.factory import create_app
from app.web.ui import checkpoints, train_monitor
from srpo import image_stats
from srpo.config import ConfigError, make_config, preset
from srpo.monitor import GoldMonitor, held_out_reward_name, monitor_name
from srpo.train import Samples
from tests.web_support import add_account, stored_checkpoint, web_settings
from worker.callback import StudioCallback

# A run that hacks: the reward keeps rising while the judged rate falls from step 4 on.
HACKING = {
    0: (None, 0.50, 0.000),
    2: (0.10, 0.55, 0.004),
    4: (0.20, 0.60, 0.008),
    6: (0.30, 0.55, 0.010),
    8: (0.40, 0.50, 0.012),
}
FLAT = {step: (None if step == 0 else 0.2, 0.5, 0.0) for step in (0, 2, 4, 6, 8)}


def tiny(**overrides) -> dict:
    return preset("tiny-demo", **overrides).model_dump(mode="json")


def metrics(reward, gold, cast) -> dict[str, float]:
    values = {"gold": gold, "hack_cast": cast, "judged_positive_rate": gold}
    return values if reward is None else values | {"train_reward": reward}


@pytest.mark.parametrize(
    ("training", "held_out"),
    [
        ("hpsv2.1", "pickscore"),
        ("hpsv3", "pickscore"),
        ("pickscore", "hpsv2.1"),
        ("imagereward", "clip"),
        ("aesthetic", "clip"),
        ("https://scores.example/score", "clip"),
        ("0.7*hpsv2.1+0.3*aesthetic", "pickscore"),
        ("0.5*hpsv2+0.5*pickscore", "clip"),
        ("0.5*pickscore+0.5*clip", "hpsv2.1"),
    ],
)
def test_the_held_out_reward_is_never_one_the_run_trains_on(training, held_out):
    assert held_out_reward_name(training) == held_out


def test_the_config_names_its_gold_signal_and_refuses_the_training_reward_as_one():
    flux = preset("flux-lora-1gpu")
    assert monitor_name(flux) == "pickscore" and monitor_name(preset("tiny-demo")) == "judge"
    assert monitor_name(preset("flux-lora-1gpu", monitor_reward="imagereward")) == "imagereward"
    with pytest.raises(ConfigError, match="trains on 'hpsv2'"):
        preset("flux-lora-1gpu", monitor_reward="hpsv2")
    with pytest.raises(ConfigError, match="unknown reward 'nope'"):
        preset("flux-lora-1gpu", monitor_reward="nope")


def test_a_sample_step_logs_the_mean_training_reward_since_the_last_one():
    monitor = GoldMonitor(preset("tiny-demo"))
    images = torch.full((1, 3, 64, 64), 0.5)
    first, _ = monitor.measure(0, images, ["a red circle"])
    assert "train_reward" not in first and monitor.points[0].reward is None
    for reward in (0.1, 0.2, 0.6):
        monitor.observe(reward)
    later, _ = monitor.measure(3, images, ["a red circle"])
    assert later["train_reward"] == pytest.approx(0.3) and monitor.points[1].reward == 0.3


def test_a_resumed_run_keeps_its_monitor_series_and_its_base(tmp_path):
    record = tmp_path / "samples" / "monitor.jsonl"
    gray = torch.full((1, 3, 64, 64), 0.5)
    first = GoldMonitor(preset("tiny-demo"), record)
    first.measure(0, gray, ["a red circle"])
    first.observe(0.1)
    first.measure(2, gray, ["a red circle"])
    resumed = GoldMonitor(preset("tiny-demo"), record)
    assert [p.step for p in resumed.points] == [0, 2] and resumed.points[0].reward is None
    resumed.observe(0.3)
    tinted = image_stats.add_cool_cast(gray, 0.05)
    resumed.measure(2, tinted, ["a red circle"])  # the step it died after, measured again
    assert [p.step for p in resumed.points] == [0, 2] and resumed.points[1].reward == 0.3
    assert resumed.drift()["saturation"] == pytest.approx(0.1, abs=1e-4)


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    folder = tmp_path_factory.mktemp("monitoring")
    app = create_app(web_settings(folder))
    trainer = add_account(app.state.studio.db, "tina", Role.TRAINER)
    with TestClient(app) as client:
        yield SimpleNamespace(
            app=app,
            db=app.state.studio.db,
            settings=app.state.studio.settings,
            api=client,
            headers=trainer.headers,
        )


def record(db, job_id: int, series: dict) -> None:
    def work(session) -> None:
        for step, values in series.items():
            monitoring.record_point(session, job_id, step, metrics(*values))

    db.write(work)


def test_the_warning_fires_on_a_hacking_series_and_names_the_checkpoint_before_it(studio):
    job_id, checkpoint_id, _ = stored_checkpoint(studio.db, studio.settings, step=4)
    record(studio.db, job_id, HACKING)
    with studio.db.session() as session:
        warning = monitoring.warning(session, job_id)
        at_checkpoint = reads.checkpoint_row(session, reads.checkpoint(session, checkpoint_id))
    assert warning["step"] == 8 and warning["last_good_step"] == 4
    assert warning["checkpoint"] == {"id": checkpoint_id, "step": 4}
    assert f"step 4 (checkpoint {checkpoint_id})" in warning["message"]
    assert "gold signal fell" in warning["reason"]
    watched = at_checkpoint["monitor"]
    assert watched["measured_at"] == 4 and watched["hack_drift"] == pytest.approx(0.008)
    assert watched["gold_change"] == pytest.approx(0.10)


def test_the_warning_stays_silent_on_a_flat_series(studio):
    job_id, _, _ = stored_checkpoint(studio.db, studio.settings, step=4)
    record(studio.db, job_id, FLAT)
    with studio.db.session() as session:
        assert monitoring.warning(session, job_id) is None


def test_the_drift_past_its_threshold_warns_without_a_checkpoint_before_it(studio):
    job_id = studio.db.write(lambda s: jobs.submit(s, studio.settings, tiny()).id)
    record(studio.db, job_id, {0: (None, 0.5, 0.0), 2: (0.1, 0.6, 0.05)})
    with studio.db.session() as session:
        warning = monitoring.warning(session, job_id)
    assert warning["checkpoint"] is None and "hack_cast drifted +0.050" in warning["reason"]
    assert "no checkpoint was saved before it" in warning["message"]


def test_the_worker_callback_stores_each_point_and_logs_the_warning_once(studio, caplog):
    db, settings = studio.db, studio.settings
    job_id = db.write(lambda s: jobs.submit(s, settings, tiny()).id)
    lease = db.write(lambda s: jobs.claim(s, job_id, "test-worker", settings))
    output = Path(settings.storage) / "monitor-run"
    callback = StudioCallback(db, settings, lease, output)
    image = torch.full((1, 3, 8, 8), 0.5)
    with caplog.at_level(logging.WARNING, logger="worker.callback"):
        for step, values in HACKING.items():
            path = output / "samples" / f"step-{step:06d}.png"
            callback.on_samples(Samples(step, image, ["a red circle"], [0], path, metrics(*values)))
    lines = [r.getMessage() for r in caplog.records if "reward hacking" in r.getMessage()]
    assert len(lines) == 1 and "at step 8" in lines[0] and f"job {job_id}" in lines[0]
    with db.session() as session:
        points = monitoring.points(session, job_id)
    assert [p.step for p in points] == list(HACKING) and points[0].reward is None
    assert points[-1].reward == 0.40 and points[-1].metrics["hack_cast"] == 0.012


def test_the_rest_api_carries_the_monitor_of_jobs_and_checkpoints(studio):
    job_id, checkpoint_id, _ = stored_checkpoint(studio.db, studio.settings, step=4)
    record(studio.db, job_id, HACKING)
    detail = studio.api.get(f"/api/v1/jobs/{job_id}", headers=studio.headers).json()
    assert detail["monitor"]["gold_signal"] == "judge"
    assert [p["step"] for p in detail["monitor"]["points"]] == list(HACKING)
    assert detail["monitor"]["points"][2]["train_reward"] == 0.20
    assert detail["monitor"]["warning"]["checkpoint"]["id"] == checkpoint_id
    alone = studio.api.get(f"/api/v1/jobs/{job_id}/monitor", headers=studio.headers).json()
    assert alone == detail["monitor"]
    listed = studio.api.get(
        "/api/v1/checkpoints", params={"job_id": job_id}, headers=studio.headers
    ).json()
    assert listed[0]["monitor"]["hack_drift"] == pytest.approx(0.008)
    missing = studio.api.get("/api/v1/jobs/99999/monitor", headers=studio.headers)
    assert missing.status_code == 404


def test_the_train_tab_plots_reward_against_gold_and_shows_the_banner(studio):
    job_id, checkpoint_id, _ = stored_checkpoint(studio.db, studio.settings, step=4)
    record(studio.db, job_id, HACKING)
    banner, frame = train_monitor.monitor_view(SimpleNamespace(db=studio.db), job_id)
    assert 'role="alert"' in banner and f"checkpoint {checkpoint_id}" in banner
    reward = frame[frame["series"] == "training reward"]
    gold = frame[frame["series"] == "gold signal"]
    assert list(reward["step"]) == [2, 4, 6, 8] and list(gold["step"]) == list(HACKING)
    assert list(reward["value"]) == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert list(gold["raw"]) == [0.5, 0.55, 0.6, 0.55, 0.5]
    quiet = {"gold_signal": "pickscore", "points": [{"step": 0}], "warning": None}
    assert "held-out reward pickscore" in train_monitor.banner_html(quiet)
    assert "alert" not in train_monitor.banner_html(quiet)


def test_the_checkpoint_list_shows_the_drift_per_checkpoint(studio):
    job_id, checkpoint_id, _ = stored_checkpoint(studio.db, studio.settings, step=4)
    record(studio.db, job_id, HACKING)
    table = checkpoints.checkpoint_table(SimpleNamespace(db=studio.db, settings=studio.settings))
    row = table[table["id"] == checkpoint_id].iloc[0]
    assert row["hack drift"] == pytest.approx(0.008) and row["gold Δ"] == pytest.approx(0.1)


def test_the_model_card_reports_the_drift_at_its_checkpoint_and_the_warning(studio):
    job_id, early, _ = stored_checkpoint(studio.db, studio.settings, step=4)
    record(studio.db, job_id, HACKING)
    card = studio.api.get(f"/api/v1/checkpoints/{early}/model-card", headers=studio.headers)
    section = card.text.split("## Hacking monitor")[1].split("## Arena")[0]
    assert "Gold signal `judge`, measured at step 4" in section
    assert "| hack_cast | 0.0080 | 0.0080 | 0.0290 |" in section
    assert "| gold | 0.6000 | 0.1000 | |" in section and "| training reward | 0.2000 |" in section
    assert f"step 4 (checkpoint {early})" in section and "comes after" not in section
    late_job, late, _ = stored_checkpoint(studio.db, studio.settings, step=8)
    record(studio.db, late_job, HACKING)
    card = studio.api.get(f"/api/v1/checkpoints/{late}/model-card", headers=studio.headers)
    assert "This checkpoint comes after step 4, where the hacking began." in card.text
    _, quiet, _ = stored_checkpoint(studio.db, studio.settings, step=4)
    card = studio.api.get(f"/api/v1/checkpoints/{quiet}/model-card", headers=studio.headers)
    assert "No sample step was measured by this checkpoint's step." in card.text


def test_a_job_without_sample_steps_has_an_empty_monitor(studio):
    job_id = studio.db.write(lambda s: jobs.submit(s, studio.settings, tiny(sample_every=0)).id)
    with studio.db.session() as session:
        job = session.get(Job, job_id)
        assert monitoring.job_monitor(session, job) == {
            "gold_signal": "judge",
            "points": [],
            "warning": None,
        }
        assert make_config(job.config).sample_every == 0
