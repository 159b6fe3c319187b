"""Shared pieces of the studio web tests: users, a served app, stored checkpoints and pairs."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import select

from app.core import jobs, outputs
from app.core.arena import pair_key
from app.core.db import Database
from app.core.models import Campaign, CampaignState, Checkpoint, Comparison, Role, User
from app.core.settings import Settings
from app.core.storage import job_dir
from app.core.users import create_token, create_user
from srpo.config import preset

PASSWORD = "correct-horse-battery"


@dataclass(frozen=True)
class Account:
    """A user made for a test, with an API token."""

    username: str
    role: Role
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def add_account(db: Database, username: str, role: Role) -> Account:
    """Create a user with :data:`PASSWORD` and a token."""

    def work(session) -> str:
        user = create_user(session, username, PASSWORD, role)
        session.flush()
        return create_token(session, user, "test")

    return Account(username, role, db.write(work))


def web_settings(folder: Path, **extra) -> Settings:
    """Embedded-mode settings in ``folder`` with a first admin."""
    return Settings(data_dir=folder / "data", admin_password=PASSWORD, **extra)


def tiny_config(**overrides) -> dict:
    """The tiny demo preset at a few cheap steps."""
    options = {"steps": 2, "rollout_steps": 2, "batch_size": 1, "checkpoint_every": 1}
    options["sample_every"] = 0  # the preset renders grids every 10 steps; these jobs none
    return preset("tiny-demo", **{**options, **overrides}).model_dump(mode="json")


def stored_checkpoint(db: Database, settings: Settings, step: int = 1) -> tuple[int, int, bytes]:
    """A job with one checkpoint folder on disk; returns (job id, checkpoint id, weights)."""
    job_id = db.write(lambda s: jobs.submit(s, settings, tiny_config()).id)
    folder = job_dir(settings.storage, job_id) / "checkpoints" / f"step-{step:06d}"
    folder.mkdir(parents=True)
    weights = b"weights of job %d" % job_id
    (folder / "pytorch_lora_weights.safetensors").write_bytes(weights)
    (folder / "manifest.json").write_text("{}")
    files = {"pytorch_lora_weights.safetensors": hashlib.sha256(weights).hexdigest()}
    db.write(
        lambda s: outputs.record_checkpoint(
            s, settings.storage, job_id, folder, step, "lora", files
        )
    )
    with db.session() as session:
        checkpoint_id = session.scalar(select(Checkpoint.id).where(Checkpoint.job_id == job_id))
    return job_id, checkpoint_id, weights


def ready_campaign(
    db: Database, settings: Settings, name: str, pairs: int = 3, criteria=("overall",)
) -> tuple[int, list[int]]:
    """A campaign open for votes with blind pairs of base vs a fake model; returns ids."""
    folder = settings.storage / "campaigns" / name
    folder.mkdir(parents=True, exist_ok=True)

    def image(model: str, n: int, colour: tuple[int, int, int]) -> int:
        path = folder / f"{model.replace(':', '-')}-{n}.png"
        Image.new("RGB", (16, 16), colour).save(path)
        return db.write(
            lambda s: outputs.record_sample(
                s, settings.storage, path, model=model, prompt="a red circle", seed=n, size=(16, 16)
            )
        )

    images = [
        (image("base", n, (200, 30, 30)), image("other", n, (90, 90, 90))) for n in range(pairs)
    ]

    def work(session) -> tuple[int, list[int]]:
        campaign = Campaign(
            name=name,
            models=["base", "other"],
            prompts=["a red circle"],
            seeds=list(range(pairs)),
            criteria=list(criteria),
            state=CampaignState.READY,
        )
        session.add(campaign)
        session.flush()
        ids = []
        for n, (left, right) in enumerate(images):
            pair = Comparison(
                campaign_id=campaign.id,
                prompt_index=0,
                prompt="a red circle",
                seed=n,
                pair_key=pair_key("base", "other"),
                left_model="base",
                right_model="other",
                left_image_id=left,
                right_image_id=right,
            )
            session.add(pair)
            session.flush()
            ids.append(pair.id)
        return campaign.id, ids

    return db.write(work)


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the studio server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = server.force_exit = True
        thread.join(30)


def user_id(db: Database, username: str) -> int:
    """The id of a user."""
    with db.session() as session:
        return session.scalar(select(User.id).where(User.username == username))
