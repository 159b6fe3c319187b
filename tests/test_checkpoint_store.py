"""Checkpoints at an fsspec URL: a run resumes there from another output folder (another
node's), to the weights of an uninterrupted run, and a damaged copy there is skipped."""

from __future__ import annotations

import torch

from srpo.checkpoint_store import fetch_latest, remote_steps
from srpo.checkpoints import LORA_FILE
from srpo.train import train
from tests.test_train import config, lora_weights


def test_a_run_resumes_from_the_url_on_another_node_to_the_same_weights(
    smoke_world, tmp_path
) -> None:
    url = (tmp_path / "shared").as_uri()  # file://: what every node of a local cluster reaches
    train(config(smoke_world), tmp_path / "straight")
    train(config(smoke_world, steps=2, checkpoint_url=url), tmp_path / "node-a")
    assert remote_steps(url) == [2]
    elsewhere = tmp_path / "node-b"  # nothing of the first run's output is here
    result = train(config(smoke_world, checkpoint_url=url), elsewhere)
    assert result.step == 4 and remote_steps(url) == [4, 2]
    assert (elsewhere / "checkpoints" / "step-000002").is_dir()  # fetched, then resumed from
    straight, resumed = lora_weights(tmp_path / "straight"), lora_weights(elsewhere)
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.allclose(straight[key], resumed[key], atol=1e-6), key

    damaged = tmp_path / "shared" / "step-000004" / LORA_FILE
    damaged.write_bytes(b"not the weights")
    found = fetch_latest(url, tmp_path / "node-c")
    assert found is not None and found.step == 2  # the damaged newest one is skipped
    assert not (tmp_path / "node-c" / "checkpoints" / "step-000004").exists()


def test_the_studio_keeps_each_jobs_checkpoints_under_its_url_not_the_jobs_own(tmp_path) -> None:
    from app.core import jobs
    from app.core.settings import Settings
    from app.core.startup import prepare
    from tests.integration.test_worker_embedded import tiny_job

    for url, expected in (("memory://kept/", "memory://kept/jobs/1"), (None, None)):
        settings = Settings(data_dir=tmp_path / str(bool(url)), checkpoint_url=url)
        db = prepare(settings)
        asked = tiny_job(checkpoint_url=(tmp_path / "anywhere").as_uri())
        stored = db.write(lambda s, c=asked, t=settings: jobs.submit(s, t, c).config)
        assert stored["checkpoint_url"] == expected
        db.dispose()
