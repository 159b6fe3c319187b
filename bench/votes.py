"""Vote submission latency through the REST API on PostgreSQL; prints one JSON object.

The studio runs as it is deployed: ``srpo studio`` in distributed mode (uvicorn, the
maintenance loop) in a process of its own, on a new PostgreSQL database that is dropped at
the end. ``--raters`` raters (threads, each with its own HTTP client and bearer token) wait
for each other, then each posts one vote on every pair of a ready campaign of ``--pairs``
pairs in its own random order, pausing a random 0 to 2x ``--think-ms`` before each vote (a
person looking at the pair): raters x pairs distinct votes. Timed: each
``POST /api/v1/votes`` from the request to the answer. Reported: count, p50, p90, p99 and
max in milliseconds, errors (answers other than 201, or failed requests), the votes stored
(counted in the database), votes per second and the machine's 1-minute load average. The
goal is p99 <= 100 ms. The default, no pause, is the worst case: all raters at once.

    flock /tmp/cpu.lock .venv/bin/python bench/votes.py [--raters 50] [--pairs 40]
        [--think-ms 0] [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

from app.core.arena import pair_key
from app.core.db import Database
from app.core.models import Campaign, CampaignState, Comparison, Role, SampleImage, User, Vote
from app.core.settings import Settings
from app.core.startup import prepare
from app.core.users import create_token, hash_password

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CHOICES = ("left", "right", "tie", "both_bad", "skip")
MODELS = ("base", "checkpoint:1")


@contextmanager
def new_database(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped on exit; yields its URL."""
    name = f"srpo_bench_votes_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def populate(db: Database, raters: int, pairs: int) -> tuple[int, list[str], list[int]]:
    """Raters with one API token each and a ready campaign; returns (campaign, tokens, pairs)."""
    secret = hash_password("rater password")

    def work(session: Session) -> tuple[int, list[str], list[int]]:
        users = [
            User(username=f"rater{n}", password_hash=secret, role=Role.RATER) for n in range(raters)
        ]
        session.add_all(users)
        session.flush()
        tokens = [create_token(session, user, "bench") for user in users]
        campaign = Campaign(
            name="vote latency",
            models=list(MODELS),
            prompts=["a red circle"],
            seeds=list(range(pairs)),
            criteria=["overall"],
            state=CampaignState.READY,
        )
        session.add(campaign)
        session.flush()
        ids = []
        for seed in range(pairs):
            left, right = (
                SampleImage(
                    model=model,
                    prompt="a red circle",
                    seed=seed,
                    path=f"bench/{model}-{seed}.png",
                    width=64,
                    height=64,
                )
                for model in MODELS
            )
            session.add_all([left, right])
            session.flush()
            pair = Comparison(
                campaign_id=campaign.id,
                prompt_index=0,
                prompt="a red circle",
                seed=seed,
                pair_key=pair_key(*MODELS),
                left_model=MODELS[0],
                right_model=MODELS[1],
                left_image_id=left.id,
                right_image_id=right.id,
            )
            session.add(pair)
            session.flush()
            ids.append(pair.id)
        return campaign.id, tokens, ids

    return db.write(work)


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def studio(settings: Settings, log: Path) -> Iterator[str]:
    """``srpo studio`` for ``settings`` in a process of its own; yields its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRPO_")}
    env.update(settings.environment(), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    command = [sys.executable, "-m", "srpo.cli", "studio", "--host", "127.0.0.1"]
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [*command, "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while not _healthy(url):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the studio did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(30)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def percentile(ordered: list[float], q: float) -> float:
    """The nearest-rank ``q``-quantile (0 < q <= 1) of sorted values."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def rate(
    url: str,
    token: str,
    pairs: list[int],
    think: float,
    start: threading.Barrier,
    latencies: list[float],
    errors: list[str],
) -> None:
    """One rater: warm up, wait for the others, then vote on every pair once (timed)."""
    chance = random.Random(token)
    order = chance.sample(pairs, len(pairs))
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        client.get("/api/v1/me").raise_for_status()
        start.wait()
        for n, pair in enumerate(order):
            time.sleep(chance.uniform(0, 2 * think))
            body = {"comparison_id": pair, "criterion": "overall", "choice": CHOICES[n % 5]}
            began = time.perf_counter()
            try:
                answer = client.post("/api/v1/votes", json=body)
            except httpx.HTTPError as error:
                errors.append(f"{type(error).__name__}: {error}")
                continue
            latencies.append(time.perf_counter() - began)
            if answer.status_code != 201:
                errors.append(f"{answer.status_code}: {answer.text[:200]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raters", type=int, default=50)
    parser.add_argument("--pairs", type=int, default=40, help="votes per rater")
    parser.add_argument("--think-ms", type=float, default=0.0, help="mean pause before each vote")
    parser.add_argument("--postgres-url", default=ADMIN_URL, help="a database to CREATE from")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder, new_database(args.postgres_url) as url:
        settings = Settings(
            mode="distributed",
            data_dir=Path(folder) / "data",
            storage_dir=Path(folder) / "storage",
            database_url=url,
        )
        db = prepare(settings)
        campaign_id, tokens, pair_ids = populate(db, args.raters, args.pairs)
        latencies: list[float] = []
        errors: list[str] = []
        with studio(settings, Path(folder) / "studio.log") as base:
            start = threading.Barrier(args.raters + 1, timeout=120)
            threads = [
                threading.Thread(
                    target=rate,
                    args=(base, token, pair_ids, args.think_ms / 1000, start, latencies, errors),
                )
                for token in tokens
            ]
            for thread in threads:
                thread.start()
            start.wait()
            began = time.perf_counter()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - began
        with db.session() as session:
            stored = session.scalar(
                select(func.count(Vote.id))
                .join(Comparison, Vote.comparison_id == Comparison.id)
                .where(Comparison.campaign_id == campaign_id)
            )
        db.dispose()

    ms = sorted(1000 * s for s in latencies)
    result = {
        "raters": args.raters,
        "pairs": args.pairs,
        "think_ms": args.think_ms,
        "count": len(ms),
        "p50_ms": round(percentile(ms, 0.50), 1),
        "p90_ms": round(percentile(ms, 0.90), 1),
        "p99_ms": round(percentile(ms, 0.99), 1),
        "max_ms": round(ms[-1], 1),
        "errors": len(errors),
        "first_errors": errors[:3],
        "votes_stored": stored,
        "votes_per_second": round(len(ms) / seconds, 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_cores": os.cpu_count(),
        "goal_p99_ms": 100,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
