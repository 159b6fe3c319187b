"""Arena statistics as pure functions: win rates, Bradley-Terry and its bootstrap.

A :class:`Comparison` is one rater's verdict on one blind pair, already mapped from screen
sides to models. Statistics use the comparisons they are given: filter by criterion (or
campaign) first. Ties are explicit everywhere:

- a ``"tie"`` (and a "both bad" vote, as in Chatbot Arena) means neither model is preferred;
- win rates count a tie as half a win by default (``ties="half"``) or leave ties out
  (``ties="exclude"``); Bradley-Terry always counts a tie as half a win for each side;
- skipped pairs are no comparison at all (:func:`comparison_from_vote` returns ``None``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

Outcome = Literal["a", "b", "tie"]
TieRule = Literal["half", "exclude"]
VOTE_CHOICES = ("left", "right", "tie", "both_bad", "skip")
BT_PRIOR = 1.0


@dataclass(frozen=True)
class Comparison:
    """One verdict between ``model_a`` and ``model_b``; ``outcome`` names the preferred side.

    ``pair_id`` identifies the shown pair of images (shared by all raters of it);
    ``image_a``/``image_b`` are the images' references (paths or URLs) for the export.
    """

    model_a: str
    model_b: str
    outcome: Outcome
    prompt: str = ""
    pair_id: str | None = None
    criterion: str = "overall"
    rater: str | None = None
    image_a: str | None = None
    image_b: str | None = None

    def __post_init__(self) -> None:
        if not self.model_a or not self.model_b:
            raise ValueError("a comparison needs two model names")
        if self.model_a == self.model_b:
            raise ValueError(f"a comparison needs two different models, got {self.model_a!r} twice")
        if self.outcome not in ("a", "b", "tie"):
            raise ValueError(f"outcome must be 'a', 'b' or 'tie', got {self.outcome!r}")

    @property
    def winner(self) -> str | None:
        """The preferred model, or ``None`` for a tie."""
        return {"a": self.model_a, "b": self.model_b}.get(self.outcome)

    @property
    def loser(self) -> str | None:
        """The other model, or ``None`` for a tie."""
        return {"a": self.model_b, "b": self.model_a}.get(self.outcome)


def comparison_from_vote(
    left_model: str,
    right_model: str,
    choice: str,
    left_image: str | None = None,
    right_image: str | None = None,
    **fields: str | None,
) -> Comparison | None:
    """Map a blind vote (``left``, ``right``, ``tie``, ``both_bad``, ``skip``) to a comparison.

    ``both_bad`` becomes a tie; ``skip`` gives ``None`` (no comparison). ``fields`` fill the
    rest of :class:`Comparison` (prompt, pair_id, criterion, rater).
    """
    if choice not in VOTE_CHOICES:
        raise ValueError(f"vote must be one of {', '.join(VOTE_CHOICES)}; got {choice!r}")
    if choice == "skip":
        return None
    outcome = {"left": "a", "right": "b"}.get(choice, "tie")
    return Comparison(
        left_model, right_model, outcome, image_a=left_image, image_b=right_image, **fields
    )


def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (``(0, 1)`` when ``n == 0``).

    ``successes`` may be fractional (ties counted as halves).
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class WinRate:
    """How often ``model`` beat ``opponent`` (``None``: every opponent), with its interval.

    ``rate`` is ``(wins + ties/2) / (wins + losses + ties)`` under ``ties="half"`` and
    ``wins / (wins + losses)`` under ``ties="exclude"``; ``nan`` with no comparisons.
    """

    model: str
    opponent: str | None
    wins: int
    losses: int
    ties: int
    rate: float
    low: float
    high: float
    tie_rule: TieRule


def _win_rate(
    model: str, opponent: str | None, counts: list[int], ties: TieRule, confidence: float
) -> WinRate:
    wins, losses, tied = counts
    if ties == "half":
        successes, n = wins + tied / 2, wins + losses + tied
    else:
        successes, n = wins, wins + losses
    low, high = wilson_interval(successes, n, confidence)
    rate = successes / n if n else math.nan
    return WinRate(model, opponent, wins, losses, tied, rate, low, high, ties)


def _check_ties(ties: str) -> None:
    if ties not in ("half", "exclude"):
        raise ValueError(f"ties must be 'half' or 'exclude', got {ties!r}")


def _count(comparisons: Iterable[Comparison], pairwise: bool):
    counts: dict = defaultdict(lambda: [0, 0, 0])
    for c in comparisons:
        for model, other, side in ((c.model_a, c.model_b, "a"), (c.model_b, c.model_a, "b")):
            key = (model, other) if pairwise else model
            slot = 2 if c.outcome == "tie" else (0 if c.outcome == side else 1)
            counts[key][slot] += 1
    return counts


def win_rates(
    comparisons: Iterable[Comparison], ties: TieRule = "half", confidence: float = 0.95
) -> dict[str, WinRate]:
    """Each model's win rate against all its opponents, with a Wilson interval."""
    _check_ties(ties)
    counts = _count(comparisons, pairwise=False)
    return {m: _win_rate(m, None, counts[m], ties, confidence) for m in sorted(counts)}


def pairwise_win_rates(
    comparisons: Iterable[Comparison], ties: TieRule = "half", confidence: float = 0.95
) -> dict[tuple[str, str], WinRate]:
    """Win rate of ``model`` against ``opponent`` for every ordered pair that met."""
    _check_ties(ties)
    counts = _count(comparisons, pairwise=True)
    return {key: _win_rate(*key, counts[key], ties, confidence) for key in sorted(counts)}


def _design(comparisons: Sequence[Comparison]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Model names, index pairs ``[C, 2]`` and side-a credit (1 win, 0.5 tie, 0 loss)."""
    if not comparisons:
        raise ValueError("no comparisons: Bradley-Terry needs at least one decided vote")
    models = sorted({m for c in comparisons for m in (c.model_a, c.model_b)})
    index = {m: i for i, m in enumerate(models)}
    pairs = np.array([(index[c.model_a], index[c.model_b]) for c in comparisons], dtype=np.int64)
    credit = np.array([{"a": 1.0, "b": 0.0, "tie": 0.5}[c.outcome] for c in comparisons])
    return models, pairs, credit


def _wins(m: int, pairs: np.ndarray, credit: np.ndarray, prior: float) -> np.ndarray:
    """``W[i, j]`` = credit of ``i`` over ``j``, plus ``prior`` virtual ties on every pair."""
    flat_ab = pairs[:, 0] * m + pairs[:, 1]
    flat_ba = pairs[:, 1] * m + pairs[:, 0]
    wins = np.bincount(flat_ab, credit, m * m) + np.bincount(flat_ba, 1 - credit, m * m)
    wins = wins.reshape(m, m) + prior / 2
    np.fill_diagonal(wins, 0.0)
    return wins


def _log_likelihood(theta: np.ndarray, wins: np.ndarray) -> np.ndarray:
    """Log-likelihood of each fit ``theta[S, m]`` under its wins ``[S, m, m]``."""
    diff = theta[:, :, None] - theta[:, None, :]
    return -(wins * np.logaddexp(0.0, -diff)).sum(axis=(1, 2))


def _connected(edges: np.ndarray) -> bool:
    """Whether the graph with adjacency ``edges`` links every node to node 0."""
    seen, frontier = {0}, [0]
    while frontier:
        for j in np.flatnonzero(edges[frontier.pop()]).tolist():
            if j not in seen:
                seen.add(j)
                frontier.append(j)
    return len(seen) == edges.shape[0]


def _fit(wins: np.ndarray, max_iter: int = 100) -> np.ndarray:
    """Maximum-likelihood log-strengths of each of ``S`` win matrices ``[S, m, m]`` at once,
    by Newton's method with a backtracking step per fit; ``theta[:, 0] = 0``."""
    count, m = wins.shape[0], wins.shape[1]
    theta = np.zeros((count, m))
    if m == 1:
        return theta
    games = wins + wins.transpose(0, 2, 1)
    current = _log_likelihood(theta, wins)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(theta[:, :, None] - theta[:, None, :])))
        grad = wins.sum(2) - (games * p).sum(2)
        curvature = games * p * (1 - p)
        hessian = curvature - np.eye(m) * curvature.sum(2)[:, :, None]
        try:
            step = np.linalg.solve(hessian[:, 1:, 1:], -grad[:, 1:, None])[..., 0]
        except np.linalg.LinAlgError:
            raise ValueError(
                "the comparisons do not connect all models: scores are not identifiable "
                "(add comparisons or use prior > 0)"
            ) from None
        size = np.ones(count)
        for _ in range(40):
            trial = theta.copy()
            trial[:, 1:] += size[:, None] * step
            value = _log_likelihood(trial, wins)
            worse = value < current - 1e-12
            if not worse.any():
                break
            size = np.where(worse, size / 2, size)
        theta, current = trial, value
        if np.abs(size[:, None] * step).max() < 1e-10:
            break
    if not np.isfinite(theta).all() or np.abs(theta).max() > 30:
        raise ValueError(
            "a model won or lost every comparison: its score is unbounded (use prior > 0)"
        )
    return theta


def _anchored(theta: np.ndarray, models: list[str], anchor: str | None) -> np.ndarray:
    if anchor is None:
        return theta - theta.mean(axis=-1, keepdims=True)
    return theta - theta[..., [models.index(anchor)]]


def _check_bt(models: list[str], anchor: str | None, prior: float) -> None:
    if anchor is not None and anchor not in models:
        raise ValueError(f"anchor {anchor!r} is not among the compared models {models}")
    if not math.isfinite(prior) or prior < 0:
        raise ValueError(f"prior must be >= 0, got {prior}")


def _point(models: list[str], pairs: np.ndarray, credit: np.ndarray, prior: float) -> np.ndarray:
    """The fit on all comparisons (unanchored), refusing a disconnected plain fit."""
    wins = _wins(len(models), pairs, credit, prior)
    if len(models) > 1 and not _connected((wins + wins.T) > 0):
        raise ValueError(
            "the comparisons do not connect all models: scores are not identifiable "
            "(add comparisons or use prior > 0)"
        )
    return _fit(wins[None])[0]


def bradley_terry(
    comparisons: Sequence[Comparison], anchor: str | None = None, prior: float = BT_PRIOR
) -> dict[str, float]:
    """Bradley-Terry log-strengths: ``P(i beats j) = sigmoid(score_i - score_j)``.

    Ties count as half a win for each side. ``prior`` adds that many virtual ties between
    every two models, which keeps scores finite when a model wins everything and ties the
    models together when the comparison graph is disconnected (use 0 for the plain
    maximum-likelihood fit). Scores are anchored so the ``anchor`` model scores 0, or, with
    no anchor, so the scores average 0. ``exp(score_i - score_j)`` is the strength ratio.
    """
    models, pairs, credit = _design(comparisons)
    _check_bt(models, anchor, prior)
    theta = _anchored(_point(models, pairs, credit, prior), models, anchor)
    return dict(zip(models, theta.tolist(), strict=True))


@dataclass(frozen=True)
class BTScore:
    """A Bradley-Terry score with its bootstrap percentile interval."""

    model: str
    score: float
    low: float
    high: float


@dataclass(frozen=True)
class Difference:
    """``score(a) - score(b)`` with its bootstrap percentile interval; decided when the
    interval excludes 0 (then ``winner`` is the better model)."""

    a: str
    b: str
    score: float
    low: float
    high: float
    votes: int

    @property
    def decided(self) -> bool:
        """Whether the interval excludes 0 on at least :data:`MIN_DECIDING_VOTES` direct votes
        (a percentile bootstrap of one or two votes has a zero-width interval, which would
        "decide" a comparison on a single vote)."""
        return self.votes >= MIN_DECIDING_VOTES and (self.low > 0 or self.high < 0)

    @property
    def winner(self) -> str | None:
        """The better model once decided."""
        if not self.decided:
            return None
        return self.a if self.low > 0 else self.b


@dataclass(frozen=True)
class Bootstrap:
    """Bradley-Terry scores and every pairwise difference with bootstrap intervals.

    ``samples`` resamples were drawn; ``precision`` is the estimated Monte Carlo standard
    error of the least stable interval end (0 when every end is exact).
    """

    scores: dict[str, BTScore]
    differences: dict[tuple[str, str], Difference]
    samples: int
    precision: float
    comparisons: int


# Two runs with different seeds give interval ends within TOLERANCE of each other (95 %):
# the standard error of one end must stay under TOLERANCE / (1.96 * sqrt 2).
BOOTSTRAP_TOLERANCE = 0.01
BOOTSTRAP_START = 4000
MIN_DECIDING_VOTES = 5
BOOTSTRAP_MAX = 400_000
_CHUNK = 25_000


def _resample_fits(
    rng: np.random.Generator,
    m: int,
    cells: np.ndarray,
    basis: np.ndarray,
    prior: float,
    count: int,
) -> np.ndarray:
    """``count`` fits, each on ``n`` comparisons drawn with replacement.

    Drawing ``n`` of ``n`` comparisons with replacement counts each distinct (pair, outcome)
    cell multinomially, so a resample is a draw of cell counts; ``basis[k]`` is the win matrix
    of one comparison of cell ``k``.
    """
    n = int(cells.sum())
    fits = []
    for start in range(0, count, _CHUNK):
        size = min(_CHUNK, count - start)
        counts = rng.multinomial(n, cells / n, size=size)
        # few votes repeat the same resample often: fit each distinct one once
        distinct, inverse = np.unique(counts, axis=0, return_inverse=True)
        wins = (distinct.astype(np.float64) @ basis).reshape(len(distinct), m, m) + prior / 2
        wins[:, np.arange(m), np.arange(m)] = 0.0
        fits.append(_fit(wins)[inverse.reshape(-1)])
    return np.concatenate(fits)


def _ends(values: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile interval ends of each column and the Monte Carlo standard error of each
    end, from the distribution-free confidence interval of a quantile (order statistics)."""
    count = values.shape[0]
    ordered = np.sort(values, axis=0)
    low, high = np.quantile(ordered, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
    errors = []
    for q in ((1 - confidence) / 2, (1 + confidence) / 2):
        spread = 1.96 * math.sqrt(count * q * (1 - q))
        below = ordered[max(0, math.floor(count * q - spread))]
        above = ordered[min(count - 1, math.ceil(count * q + spread))]
        errors.append((above - below) / (2 * 1.96))
    return low, high, np.maximum(errors[0], errors[1])


def bradley_terry_bootstrap(
    comparisons: Sequence[Comparison],
    anchor: str | None = None,
    prior: float = BT_PRIOR,
    samples: int | None = None,
    confidence: float = 0.95,
    seed: int = 0,
    tolerance: float = BOOTSTRAP_TOLERANCE,
    max_samples: int = BOOTSTRAP_MAX,
) -> Bootstrap:
    """Bradley-Terry scores and pairwise differences with percentile intervals from
    resampling the comparisons.

    Each resample draws ``len(comparisons)`` comparisons with replacement (numpy generator
    seeded by ``seed``: the same inputs and seed give the same intervals) and refits under
    the same anchor and prior. With ``samples=None`` the count grows (from
    :data:`BOOTSTRAP_START`, at most ``max_samples``) until every interval end, scores and
    differences alike, is estimated to move less than ``tolerance`` between two seeds.
    """
    if (samples is not None and samples < 1) or not 0 < confidence < 1:
        raise ValueError("samples must be >= 1 and confidence in (0, 1)")
    if tolerance <= 0 or max_samples < 1:
        raise ValueError("tolerance and max_samples must be positive")
    models, pairs, credit = _design(comparisons)
    _check_bt(models, anchor, prior)
    m = len(models)
    point = _anchored(_point(models, pairs, credit, prior), models, anchor)
    keys, cells = np.unique(np.column_stack([pairs, credit]), axis=0, return_counts=True)
    basis = np.zeros((len(keys), m * m))
    for k, (i, j, c) in enumerate(keys):
        basis[k, int(i) * m + int(j)] += c
        basis[k, int(j) * m + int(i)] += 1 - c
    rng = np.random.default_rng(seed)
    upper, lower = np.triu_indices(m, 1)
    target = tolerance / (1.96 * math.sqrt(2))
    draws = np.empty((0, m))
    wanted = samples or min(BOOTSTRAP_START, max_samples)
    while True:
        more = _resample_fits(rng, m, cells.astype(np.float64), basis, prior, wanted - len(draws))
        draws = np.concatenate([draws, _anchored(more, models, anchor)])
        values = np.concatenate([draws, draws[:, upper] - draws[:, lower]], axis=1)
        low, high, error = _ends(values, confidence)
        precision = float(error.max())
        if samples is not None or precision <= target or len(draws) >= max_samples:
            break
        needed = len(draws) * (precision / target) ** 2 * 1.1
        wanted = int(min(max_samples, max(needed, 1.5 * len(draws))))
    scores = {
        model: BTScore(model, float(point[i]), float(low[i]), float(high[i]))
        for i, model in enumerate(models)
    }
    direct = np.zeros((m, m), dtype=int)
    np.add.at(direct, (pairs[:, 0], pairs[:, 1]), 1)
    direct += direct.T
    differences = {}
    for k, (i, j) in enumerate(zip(upper.tolist(), lower.tolist(), strict=True)):
        a, b = models[i], models[j]
        differences[(a, b)] = Difference(
            a,
            b,
            float(point[i] - point[j]),
            float(low[m + k]),
            float(high[m + k]),
            int(direct[i, j]),
        )
    return Bootstrap(scores, differences, len(draws), precision, len(comparisons))
