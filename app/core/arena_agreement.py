"""How well a reward agrees with human raters, pair by pair (pure functions).

The reward's winner of each blind pair is set against the raters' majority winner; the rate
has a Wilson interval (:func:`app.core.arena_stats.wilson_interval`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from app.core.arena_stats import Comparison, wilson_interval


@dataclass(frozen=True)
class Agreement:
    """How often the reward's winner is the raters' majority winner, over decided pairs."""

    agree: int
    decided: int
    undecided: int
    rate: float
    low: float
    high: float


def human_reward_agreement(
    comparisons: Iterable[Comparison],
    reward_scores: Mapping[str, Mapping[str, float]],
    confidence: float = 0.95,
) -> Agreement:
    """Fraction of decided pairs where the reward and the raters' majority pick the same model.

    Votes are grouped by ``pair_id``; the raters' winner is the model with more win votes
    (tie votes abstain). ``reward_scores[pair_id]`` maps each of the pair's two models to its
    image's reward; the higher one wins. A pair is decided when both the raters and the
    reward have a strict winner; the others count as ``undecided``. The interval is Wilson's.
    """
    votes: dict[str, dict[str, int]] = {}
    models: dict[str, frozenset[str]] = {}
    for c in comparisons:
        if c.pair_id is None:
            raise ValueError("every comparison needs a pair_id to compute agreement")
        pair = frozenset((c.model_a, c.model_b))
        if models.setdefault(c.pair_id, pair) != pair:
            raise ValueError(f"pair {c.pair_id!r} has votes on different models")
        tally = votes.setdefault(c.pair_id, dict.fromkeys(pair, 0))
        if c.winner is not None:
            tally[c.winner] += 1
    missing = sorted(set(votes) - set(reward_scores))
    if missing:
        raise ValueError(f"no reward scores for pair(s) {missing[:5]}")
    agree = decided = 0
    for pair_id, tally in votes.items():
        scores = reward_scores[pair_id]
        if set(scores) != set(tally):
            raise ValueError(f"reward scores of pair {pair_id!r} must name models {sorted(tally)}")
        (first, n_first), (second, n_second) = tally.items()
        if n_first == n_second or scores[first] == scores[second]:
            continue
        decided += 1
        human = first if n_first > n_second else second
        agree += human == max(scores, key=scores.__getitem__)
    low, high = wilson_interval(agree, decided, confidence)
    rate = agree / decided if decided else math.nan
    return Agreement(agree, decided, len(votes) - decided, rate, low, high)
