"""The ETA counts the updates, sampling rounds and checkpoint saves still to come, each at
its measured duration, and leaves the first update's warm-up out."""

import math

from srpo.eta import EtaClock, estimate, events_left


def test_events_left_counts_the_multiples_still_to_come_and_the_last_step():
    assert events_left(10, 40, 10, at_end=False) == 4  # 10, 20, 30, 40
    assert events_left(11, 40, 10, at_end=False) == 3
    assert events_left(1, 25, 10, at_end=True) == 3  # 10, 20 and the final 25
    assert events_left(1, 20, 10, at_end=True) == 2  # 20 is both
    assert events_left(3, 8, 0, at_end=False) == 0
    assert events_left(41, 40, 10, at_end=True) == 0


def test_the_eta_adds_samples_and_checkpoints_to_the_steady_update_time():
    # a slow first update (warm-up), then 1 s updates; 3 s per sampling round, none saved yet
    updates, samples = [5.0, 1.0, 1.0, 1.0], [3.0]
    eta = estimate(updates, samples, [], done=4, total=20, sample_every=5, checkpoint_every=10)
    # 16 updates, sampling at 5, 10, 15, 20, saves at 10 and 20 (one update's time each)
    assert eta == 16 * 1.0 + 4 * 3.0 + 2 * 1.0
    # elapsed over steps done would say 8 s / 4 * 16 = 32 s here; with 30 s saves it is far off
    clock = EtaClock(20, 5, 10, updates, samples, [30.0])
    assert clock.remaining(4) == 16 + 12 + 60
    assert math.isnan(estimate([], [], [], 0, 10, 0, 5))
