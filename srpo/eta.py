"""The training loop's time-to-finish estimate, from what it has measured.

Not elapsed time over steps done: that spreads the first step's warm-up over every later
step and ignores the fixed-seed samples and checkpoints still to come. Instead: the median
update time (the first update left out once there are others) times the updates left, plus
the mean time of a sampling round times the rounds left, plus the mean time of a checkpoint
save times the saves left (with no save measured yet, one update's time stands in).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class EtaClock:
    """Measured durations of a run's updates, sampling rounds and checkpoint saves."""

    total: int
    sample_every: int
    checkpoint_every: int
    updates: list[float] = field(default_factory=list)
    samples: list[float] = field(default_factory=list)
    saves: list[float] = field(default_factory=list)

    def remaining(self, done: int) -> float:
        """Seconds until the run ends, after ``done`` updates (this step's own sampling and
        checkpoint, which follow the progress report, still to come)."""
        return estimate(
            self.updates,
            self.samples,
            self.saves,
            done,
            self.total,
            self.sample_every,
            self.checkpoint_every,
        )


def events_left(done: int, total: int, every: int, at_end: bool) -> int:
    """How many of the steps ``done..total`` are multiples of ``every`` (and the last step, if
    ``at_end``, counted once)."""
    if done > total:
        return 0
    count = 0 if not every else total // every - (done - 1) // every
    if at_end and (not every or total % every):
        count += 1
    return count


def estimate(
    updates: Sequence[float],
    samples: Sequence[float],
    saves: Sequence[float],
    done: int,
    total: int,
    sample_every: int,
    checkpoint_every: int,
) -> float:
    """Seconds left: updates, sampling rounds and checkpoint saves still to come, each at its
    measured typical duration."""
    if not updates:
        return float("nan")
    steady = updates[1:] if len(updates) > 1 else updates
    per_update = statistics.median(steady)
    per_sample = statistics.fmean(samples) if samples else per_update
    per_save = statistics.fmean(saves) if saves else per_update
    return (
        per_update * (total - done)
        + per_sample * events_left(done, total, sample_every, at_end=False)
        + per_save * events_left(done, total, checkpoint_every, at_end=True)
    )
