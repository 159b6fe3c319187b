"""Sign-in limits: backoff per user name and per address, and bounded password checks.

A password check (argon2) costs about half a second of a core by design, so neither
guessing nor a flood of sign-ins may be unbounded:

- **Backoff.** Each user name and each client address has a failure count. The first
  ``free_failures`` failures cost nothing; after that every further attempt waits 1, 2, 4,
  ... seconds (at most ``max_lockout``) and is answered 429 with ``Retry-After`` until
  then, before any password is checked. A sign-in resets its user name's count, not its
  address's; a count also resets ``max_lockout`` seconds after its last failure or lockout. Attempts still being checked count as failures, so a burst of concurrent
  guesses gets no more checks than the same guesses one after another.
- **Bounded work.** At most ``concurrency`` checks run at once, in threads of their own
  (the rest of the studio keeps its worker threads), and at most ``max_waiting`` wait for
  one; any attempt beyond that is answered 429 at once. So a flood from one place
  is cut to a few checks, and a real user signs in behind at most ``max_waiting`` others.

State is kept in memory, per studio process. Behind a reverse proxy the client address is
the proxy's unless the server trusts its ``X-Forwarded-For``
(``srpo studio --forwarded-allow-ips``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio

T = TypeVar("T")
MAX_TRACKED = 100_000  # counters kept before expired ones are dropped (memory bound)


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


@dataclass
class _Counter:
    failures: int = 0
    pending: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0


class LoginGuard:
    """See the module docstring."""

    def __init__(
        self,
        free_failures: int,
        max_lockout: float,
        concurrency: int,
        max_waiting: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free_failures = free_failures
        self.max_lockout = max_lockout
        self.concurrency = concurrency
        self.max_waiting = 4 * concurrency if max_waiting is None else max_waiting
        self.clock = clock
        self._limiter: anyio.CapacityLimiter | None = None  # made in the server's event loop
        self._counters: dict[str, _Counter] = {}
        self._lock = threading.Lock()

    @staticmethod
    def keys(username: str, address: str) -> tuple[str, str]:
        """The counters one attempt touches: its user name (any case) and its address."""
        return "u:" + username.strip().casefold()[:64], "a:" + address

    def _wait(self, counter: _Counter, now: float) -> float:
        if counter.locked_until > now:
            return counter.locked_until - now
        if counter.pending and counter.failures + counter.pending >= self.free_failures:
            return 1.0  # past the free attempts, one check at a time
        return 0.0

    def _admit(self, keys: tuple[str, ...]) -> None:
        now = self.clock()
        with self._lock:
            counters = [self._counters.setdefault(key, _Counter()) for key in keys]
            wait = max(self._wait(counter, now) for counter in counters)
            if wait > 0:
                raise Busy("Too many failed sign-ins.", wait)
            for counter in counters:
                counter.pending += 1

    def _finish(self, keys: tuple[str, ...], succeeded: bool) -> None:
        now = self.clock()
        with self._lock:
            for key in keys:
                counter = self._counters.setdefault(key, _Counter())
                counter.pending = max(0, counter.pending - 1)
                if succeeded:
                    continue
                if now - max(counter.last_failure, counter.locked_until) > self.max_lockout:
                    counter.failures = 0  # failures this old are forgiven
                counter.failures += 1
                counter.last_failure = now
                over = counter.failures - self.free_failures
                if over > 0:
                    counter.locked_until = now + min(self.max_lockout, 2.0 ** (over - 1))
            if succeeded:
                self._counters.pop(keys[0], None)
            if len(self._counters) > MAX_TRACKED:
                self._counters = {
                    key: counter
                    for key, counter in self._counters.items()
                    if counter.pending or counter.locked_until > now
                }

    def retry_after(self, keys: tuple[str, ...]) -> float:
        """Seconds until these counters let an attempt through (0: now)."""
        now = self.clock()
        with self._lock:
            found = [self._counters.get(key) for key in keys]
            return max((self._wait(c, now) for c in found if c is not None), default=0.0)

    async def attempt(self, keys: tuple[str, ...], check: Callable[[], T | None]) -> T | None:
        """Run ``check`` (the password check; None means it failed) within the limits;
        raises :class:`Busy` instead where they refuse it."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.concurrency)
        if self._limiter.statistics().tasks_waiting >= self.max_waiting:
            raise Busy("The studio is busy checking other sign-ins.", 1.0)
        self._admit(keys)
        found = None
        try:
            found = await anyio.to_thread.run_sync(check, limiter=self._limiter)
        finally:
            self._finish(keys, found is not None)
        return found
