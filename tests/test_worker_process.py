"""Training processes: the launch command, death with the worker, group kill, path safety."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from app.core.errors import NotFound
from app.core.storage import relative, resolve
from worker.launch_local import training_command
from worker.process import kill_group


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split(") ")[1][0] == "Z":
                    return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        time.sleep(0.05)
    return False


def test_one_process_runs_plainly_and_several_under_accelerate() -> None:
    assert training_command(7, 1)[1:] == ["-m", "worker.run_job", "7"]
    several = training_command(7, 4)
    assert several[1:3] == ["-m", "accelerate.commands.launch"]
    assert several[several.index("--num_processes") + 1] == "4"
    assert "--multi_gpu" in several and several[-3:] == ["--module", "worker.run_job", "7"]


def test_a_trainer_dies_with_the_worker_that_started_it(tmp_path) -> None:
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "from worker.process import die_with_parent\n"
            "child = subprocess.Popen(['sleep', '300'], preexec_fn=die_with_parent,"
            " start_new_session=True)\n"
            f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
            "time.sleep(300)\n",
        ]
    )
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert not _gone(child, timeout=0.2)
    parent.kill()
    parent.wait()
    assert _gone(child)


def test_kill_group_reaches_grandchildren() -> None:
    shell = subprocess.Popen(
        ["sh", "-c", "sleep 300 & echo $!; wait"], stdout=subprocess.PIPE, start_new_session=True
    )
    grandchild = int(shell.stdout.readline())
    kill_group(shell.pid)
    shell.wait()
    assert _gone(grandchild)
    kill_group(shell.pid)  # a group already gone is fine


@pytest.mark.parametrize("stored", ["../secret", "/etc/passwd", "jobs/../../x", "link/x"])
def test_stored_paths_cannot_leave_the_storage_root(tmp_path, stored) -> None:
    root = tmp_path / "storage"
    (root / "jobs").mkdir(parents=True)
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(NotFound):
        resolve(root, stored)


def test_stored_paths_round_trip(tmp_path) -> None:
    target = tmp_path / "jobs" / "3" / "checkpoints" / "step-000002"
    assert relative(tmp_path, target) == "jobs/3/checkpoints/step-000002"
    assert resolve(tmp_path, "jobs/3/checkpoints/step-000002") == target.resolve()


def test_the_job_log_has_a_line_per_step_and_a_clear_last_line_on_failure() -> None:
    from srpo.train import Progress
    from worker.callback import progress_line
    from worker.run_job import failure_line

    line = progress_line(Progress(3, 40, 0.12345, 0.5, 0.25, 1.0, 1.5, 55.5))
    assert line == "step 3/40 · loss 0.1235 · reward 0.5000 ± 0.2500 · 1.50 s/step · ETA 56 s"
    message = "ValueError: steps must be positive\nmore detail"
    assert (
        failure_line(7, 2, message)
        == "job 7 FAILED (attempt 2): ValueError: steps must be positive"
    )


def test_a_lost_peer_is_told_from_a_failure_of_the_job():
    from worker.run_job import lost_peer

    gloo = RuntimeError(
        "[gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:47761."
    )
    assert lost_peer(gloo)
    assert lost_peer(RuntimeError("[pair.cc:545] Read error: Connection reset by peer"))
    assert not lost_peer(ValueError("steps: must be at least 1"))
    assert not lost_peer(RuntimeError("CUDA out of memory"))
