"""A checkpoint downloads as one file that its snippet loads: a full model as a zip of its
folder (config.json and weights, not the optimizer), a LoRA as its safetensors file; the
size the Checkpoints tab shows is the download's."""

from __future__ import annotations

import hashlib
import shutil
import zipfile

import torch
from sqlalchemy import select

from app.core import downloads, jobs, outputs
from app.core.models import Checkpoint
from app.core.startup import prepare
from app.core.storage import job_dir
from app.web.cards import diffusers_snippet
from tests.web_support import stored_checkpoint, tiny_config, web_settings


def test_a_full_checkpoint_downloads_as_a_zip_that_its_snippet_loads(tmp_path, monkeypatch):
    from srpo.models import load_generator

    settings = web_settings(tmp_path / "studio")
    db = prepare(settings)
    job_id = db.write(lambda s: jobs.submit(s, settings, tiny_config()).id)
    folder = job_dir(settings.storage, job_id) / "checkpoints" / "step-000002"
    trained = load_generator("tiny").transformer
    with torch.no_grad():
        next(trained.parameters()).add_(0.5)  # unlike the base model's weights
    trained.save_pretrained(folder / "transformer", safe_serialization=True)
    (folder / "optimizer.pt").write_bytes(b"x" * 5000)
    files = {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    db.write(
        lambda s: outputs.record_checkpoint(s, settings.storage, job_id, folder, 2, "full", files)
    )
    with db.session() as session:
        found = session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id)).one()
        session.expunge(found)

    bundle = downloads.download_path(settings, found)
    assert downloads.download_path(settings, found) == bundle  # built once
    assert bundle.stat().st_size == downloads.download_size(settings, found)
    assert downloads.download_size(settings, found) < found.size_bytes  # no optimizer state
    with zipfile.ZipFile(bundle) as opened:
        assert sorted(opened.namelist()) == [
            "transformer/config.json",
            "transformer/diffusion_pytorch_model.safetensors",
        ]
    name = downloads.download_name(found)
    assert name == f"job{job_id}-step2.zip"

    work = tmp_path / "user"
    work.mkdir()
    shutil.copy(bundle, work / name)
    monkeypatch.chdir(work)
    namespace: dict = {}
    exec(compile(diffusers_snippet(found, {"model": "tiny"}), "snippet", "exec"), namespace)
    for (key, want), got in zip(
        trained.state_dict().items(), namespace["transformer"].state_dict().values(), strict=True
    ):
        torch.testing.assert_close(got, want, msg=key)


def test_a_lora_downloads_as_its_weights_file_and_the_size_is_that_file(tmp_path):
    settings = web_settings(tmp_path)
    db = prepare(settings)
    job_id, checkpoint_id, weights = stored_checkpoint(db, settings)
    with db.session() as session:
        found = session.get(Checkpoint, checkpoint_id)
        # resuming state beside the weights stays out of the download and its size
        (downloads.download_path(settings, found).parent / "optimizer.pt").write_bytes(b"o" * 99)
        assert downloads.download_path(settings, found).read_bytes() == weights
        assert downloads.download_size(settings, found) == len(weights)
        assert downloads.download_name(found) == (
            f"job{job_id}-step1-pytorch_lora_weights.safetensors"
        )
