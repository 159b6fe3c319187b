"""The broker is down when a job is submitted: a clear error, the row says so, and the job is
queued once the broker is back (through a real TCP path to the machine's Redis)."""

from __future__ import annotations

import json
import socket
import threading
from urllib.parse import urlsplit

import pytest
import redis
from sqlalchemy import func, select

from app.core import submission
from app.core.errors import BrokerUnavailable, StudioError
from app.core.maintenance import maintain_once
from app.core.models import Job, JobState
from app.core.startup import prepare
from tests.integration.conftest import distributed_settings
from tests.integration.test_worker_embedded import tiny_job


class Gate:
    """A TCP forwarder to Redis on a fixed local port that can be closed and reopened."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname, parts.port)
        self.db = parts.path
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}{self.db}"

    def open(self) -> None:
        self.server = socket.create_server(("127.0.0.1", self.port), reuse_port=True)
        threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()


def test_a_job_submitted_while_the_broker_is_down_is_queued_when_it_returns(
    tmp_path, postgres_url, redis_url
) -> None:
    gate = Gate(redis_url)
    settings = distributed_settings(tmp_path, postgres_url, gate.url)
    db = prepare(settings)
    with pytest.raises(BrokerUnavailable, match=r"saved but not yet queued.*unreachable"):
        submission.submit_job(db, settings, tiny_job(), name="while down")
    with db.session() as session:
        job = session.scalar(select(Job).where(Job.name == "while down"))
        assert job.state == JobState.QUEUED and job.dispatched_at is None
        assert "broker) is unreachable" in job.dispatch_error
    report = maintain_once(db, settings)
    assert report.dispatched == [] and "unreachable" in report.broker_error

    gate.open()
    try:
        assert maintain_once(db, settings).dispatched == [job.id]
        assert maintain_once(db, settings).dispatched == []  # sent once, not again
    finally:
        gate.close()
    with db.session() as session:
        job = session.get(Job, job.id)
        assert job.dispatched_at is not None and job.dispatch_error is None
    client = redis.Redis.from_url(redis_url)
    messages = [json.loads(m) for m in client.lrange(settings.gpu_queue, 0, -1)]
    client.delete(settings.gpu_queue)
    assert [m["headers"]["argsrepr"] for m in messages] == [f"[{job.id}]"]


def test_bad_input_is_refused_before_the_broker_is_asked(tmp_path, postgres_url) -> None:
    settings = distributed_settings(tmp_path, postgres_url, "redis://127.0.0.1:1/0")
    db = prepare(settings)
    before = db.write(lambda s: s.scalar(select(func.count()).select_from(Job)))
    with pytest.raises(StudioError, match="steps"):
        submission.submit_job(db, settings, tiny_job() | {"steps": -5})
    assert db.write(lambda s: s.scalar(select(func.count()).select_from(Job))) == before
