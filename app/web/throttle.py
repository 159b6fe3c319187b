"""Sign-in limits: backoff per user name and per address, and bounded password checks.

A password check (argon2) costs about half a second of a core by design, so neither
guessing nor a flood of sign-ins may be unbounded:

- **Backoff.** Each user name and each client address has a failure count. The first
  ``free_failures`` failures cost nothing; after that every further attempt waits 1, 2, 4,
  ... seconds (at most ``max_lockout``) and is answered 429 with ``Retry-After`` until
  then, before any password is checked. A sign-in resets its user name's count, not its
  address's; a count also resets ``max_lockout`` seconds after its last failure or lockout.
  Attempts still being checked count as failures, so a burst of concurrent guesses gets no
  more checks than the same guesses one after another.
- **Shared by every process.** The counts and lockouts live in the database
  (:mod:`app.core.login_failures`), so a studio served by several processes (uvicorn
  workers, replicas) on one database gives nobody more guesses than one process would.
  Each process remembers the lockouts it has seen, so a flood of refused attempts costs
  the database nothing until they end.
- **Bounded work, per process.** At most ``concurrency`` checks run at once, in threads of
  their own (the rest of the studio keeps its worker threads), and at most ``max_waiting``
  wait for one; any attempt beyond that is answered 429 at once. So a flood from one place
  is cut to a few checks, and a real user signs in behind at most ``max_waiting`` others.

Behind a reverse proxy the client address is the proxy's unless the server trusts its
``X-Forwarded-For`` (``srpo studio --forwarded-allow-ips``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import anyio

from app.core import login_failures
from app.core.db import Database

T = TypeVar("T")
MAX_TRACKED = 100_000  # lockouts remembered in memory before ended ones are dropped
FORGET_EVERY = 1000  # attempts between deletions of forgiven counters from the database


class Busy(Exception):
    """A sign-in attempt refused before its password is checked; retry after ``seconds``."""

    def __init__(self, reason: str, seconds: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.seconds = seconds

    @property
    def retry_after(self) -> str:
        """The ``Retry-After`` header's value: whole seconds, at least 1."""
        return str(max(1, math.ceil(self.seconds)))


class LoginGuard:
    """See the module docstring. ``clock`` gives seconds since the epoch (every process on
    the database must agree on it)."""

    def __init__(
        self,
        db: Database,
        free_failures: int,
        max_lockout: float,
        concurrency: int,
        max_waiting: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.free_failures = free_failures
        self.max_lockout = max_lockout
        self.concurrency = concurrency
        self.max_waiting = 4 * concurrency if max_waiting is None else max_waiting
        self.clock = clock
        self._limiter: anyio.CapacityLimiter | None = None  # made in the server's event loop
        self._locked_until: dict[str, float] = {}  # lockouts this process has seen
        self._lock = threading.Lock()
        self._admitted = 0

    @staticmethod
    def keys(username: str, address: str) -> tuple[str, str]:
        """The counters one attempt touches: its user name (any case) and its address, with
        anything but printable ASCII escaped (a NUL byte or a lone surrogate is no text that
        PostgreSQL stores), each at most the database's key length."""

        def key(prefix: str, text: str) -> str:
            escaped = text.encode("unicode_escape").decode("ascii")
            return (prefix + escaped)[: login_failures.MAX_KEY]

        return key("u:", username.strip().casefold()[:64]), key("a:", address[:128])

    def _remember(self, lockouts: dict[str, float], now: float) -> None:
        with self._lock:
            if len(self._locked_until) > MAX_TRACKED:
                self._locked_until = {k: t for k, t in self._locked_until.items() if t > now}
            for key, until in lockouts.items():
                if until > now:
                    self._locked_until[key] = until

    def _known_wait(self, keys: tuple[str, ...], now: float) -> float:
        with self._lock:
            return max(self._locked_until.get(key, 0.0) - now for key in keys)

    def _admit(self, keys: tuple[str, ...]) -> None:
        now = self.clock()
        known = self._known_wait(keys, now)
        if known > 0:  # a lockout seen here before: no need to ask the database
            raise Busy("Too many failed sign-ins.", known)
        free, cap = self.free_failures, self.max_lockout
        wait, lockouts = self.db.write(lambda s: login_failures.admit(s, keys, now, free, cap))
        self._remember(lockouts, now)
        if wait > 0:
            raise Busy("Too many failed sign-ins.", wait)
        self._admitted += 1
        if self._admitted % FORGET_EVERY == 0:
            self.db.write(lambda s: login_failures.forget_old(s, now, cap))

    def _settle(self, keys: tuple[str, ...]) -> None:
        self.db.write(lambda s: login_failures.settle(s, keys, self.free_failures))
        with self._lock:
            for key in keys:
                self._locked_until.pop(key, None)

    async def attempt(self, keys: tuple[str, ...], check: Callable[[], T | None]) -> T | None:
        """Run ``check`` (the password check; None means it failed) within the limits;
        raises :class:`Busy` instead where they refuse it."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.concurrency)
        if self._limiter.statistics().tasks_waiting >= self.max_waiting:
            raise Busy("The studio is busy checking other sign-ins.", 1.0)
        await anyio.to_thread.run_sync(self._admit, keys)  # counted as a failure from here
        found = await anyio.to_thread.run_sync(check, limiter=self._limiter)
        if found is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._settle, keys)
        return found
