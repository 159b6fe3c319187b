"""Child processes that die with their parent (Linux ``PR_SET_PDEATHSIG``) and process groups."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (no-op off Linux)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


def kill_group(pgid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    """Signal a whole process group; a group already gone is fine."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return
