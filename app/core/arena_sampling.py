"""Which pair to show next, when to stop, and verdicts in plain words (pure functions).

Active sampling, as LMArena does it: the next model pair is the one whose vote most shrinks
the widest interval among the comparisons not yet decided. Interval widths for the choice
come from the Bradley-Terry Fisher information at the current scores (cheap enough for every
request); whether a comparison is decided comes from the bootstrap
(:func:`app.core.arena_stats.bradley_terry_bootstrap`). Sampling stops once every comparison
is decided or the vote budget is spent.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from app.core.arena_stats import BT_PRIOR, Bootstrap, Comparison, bradley_terry

Pair = tuple[str, str]


def model_pairs(models: Sequence[str]) -> list[Pair]:
    """Every unordered pair of models, in the order of ``models``."""
    return list(itertools.combinations(models, 2))


def _covariance(
    models: Sequence[str], comparisons: Sequence[Comparison], prior: float
) -> tuple[np.ndarray, np.ndarray]:
    """Covariance of the scores (model 0 fixed) from the Fisher information at the fitted
    scores, and ``P(i beats j)`` there."""
    m = len(models)
    index = {name: i for i, name in enumerate(models)}
    theta = np.zeros(m)
    if comparisons:
        fitted = bradley_terry(comparisons, prior=max(prior, 1e-3))
        theta = np.array([fitted.get(name, 0.0) for name in models])
    games = np.full((m, m), prior, dtype=float)
    for c in comparisons:
        games[index[c.model_a], index[c.model_b]] += 1
        games[index[c.model_b], index[c.model_a]] += 1
    np.fill_diagonal(games, 0.0)
    p = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))
    weight = games * p * (1 - p)
    information = np.diag(weight.sum(1)) - weight
    covariance = np.zeros((m, m))
    covariance[1:, 1:] = np.linalg.pinv(information[1:, 1:])
    return covariance, p


def next_model_pair(
    models: Sequence[str],
    comparisons: Sequence[Comparison],
    undecided: Iterable[Pair],
    available: Iterable[Pair] | None = None,
    prior: float = BT_PRIOR,
) -> Pair | None:
    """The model pair whose next vote most shrinks the widest undecided interval.

    ``undecided`` are the comparisons whose interval still holds 0; ``available`` the pairs
    that can be shown (default: all). The vote's effect is the Sherman-Morrison update of the
    score covariance by one comparison's Fisher information. Ties go to the pair that shrinks
    all undecided intervals most, then to the order of ``models``. ``None`` when nothing is
    undecided or available.
    """
    index = {name: i for i, name in enumerate(models)}
    targets = [tuple(sorted(t, key=index.__getitem__)) for t in undecided]
    candidates = list(model_pairs(models) if available is None else available)
    if not targets or not candidates:
        return None
    covariance, p = _covariance(models, comparisons, prior)

    def direction(pair: Pair) -> np.ndarray:
        u = np.zeros(len(models))
        u[index[pair[0]]], u[index[pair[1]]] = 1.0, -1.0
        return u

    target_u = np.array([direction(t) for t in targets])
    variance = np.einsum("ti,ij,tj->t", target_u, covariance, target_u)
    widest = int(np.argmax(variance))
    best, best_key = None, None
    for pair in candidates:
        u = direction(pair)
        w = p[index[pair[0]], index[pair[1]]] * (1 - p[index[pair[0]], index[pair[1]]])
        spread = covariance @ u
        shrink = w * (target_u @ spread) ** 2 / (1 + w * u @ spread)
        key = (round(float(shrink[widest]), 12), round(float(shrink.sum()), 12))
        if best_key is None or key > best_key:
            best, best_key = pair, key
    return best


def undecided_pairs(fit: Bootstrap | None, models: Sequence[str]) -> list[Pair]:
    """The model pairs whose difference interval still holds 0 (all of them without a fit)."""
    if fit is None:
        return model_pairs(models)
    out = []
    for a, b in model_pairs(models):
        found = fit.differences.get((a, b)) or fit.differences.get((b, a))
        if found is None or not found.decided:
            out.append((a, b))
    return out


def stop_reason(
    fit: Bootstrap | None, models: Sequence[str], votes: int, budget: int | None
) -> str | None:
    """Why sampling is over (every comparison decided, or the vote budget spent), or None."""
    if budget is not None and votes >= budget:
        return f"the vote budget of {budget} is spent"
    if fit is not None and not undecided_pairs(fit, models):
        return "every comparison is decided"
    return None


def votes_needed(score: float, low: float, high: float, votes: int) -> int | None:
    """About how many more votes until the interval ``[low, high]`` around ``score`` excludes
    0, if the difference stays as it is and widths shrink as ``1/sqrt(votes)``; ``None``
    when there is no difference to detect."""
    half = (high - low) / 2
    if abs(score) < 1e-9 or votes < 1:
        return None
    if half <= abs(score):
        return 0
    return math.ceil(votes * ((half / abs(score)) ** 2 - 1))


def verdicts(
    fit: Bootstrap | None,
    models: Sequence[str],
    criterion: str,
    labels: Mapping[str, str] | None = None,
) -> list[str]:
    """One sentence per model pair: who beats whom on ``criterion``, or how far from decided."""
    labels = labels or {}

    def name(model: str) -> str:
        return labels.get(model, model)

    if fit is None:
        return [f"Not decided yet on {criterion}: no votes counted."]
    lines = []
    for a, b in model_pairs(models):
        if (a, b) in fit.differences:
            diff = fit.differences[(a, b)]
        elif (b, a) in fit.differences:
            diff = fit.differences[(b, a)]
        else:
            lines.append(f"{name(a)} vs {name(b)}: not decided yet: no votes on either.")
            continue
        if diff.decided:
            winner = diff.winner
            loser = diff.b if winner == diff.a else diff.a
            lines.append(
                f"{name(winner)} beats {name(loser)} on {criterion} "
                f"(95 % interval excludes 0: {abs(diff.score):.2f} "
                f"[{min(abs(diff.low), abs(diff.high)):.2f}, "
                f"{max(abs(diff.low), abs(diff.high)):.2f}])."
            )
            continue
        more = votes_needed(diff.score, diff.low, diff.high, fit.comparisons)
        first, second = (diff.a, diff.b) if diff.score >= 0 else (diff.b, diff.a)
        if more is None:
            lines.append(
                f"{name(first)} vs {name(second)} on {criterion}: not decided yet: "
                "no difference so far."
            )
        else:
            lines.append(
                f"{name(first)} vs {name(second)} on {criterion}: not decided yet: "
                f"about {max(more, 1)} more votes needed."
            )
    return lines


def simulate(
    strengths: Mapping[str, float],
    policy: str,
    seed: int,
    budget: int = 2000,
    check_every: int = 10,
    samples: int = 2000,
) -> tuple[int, Bootstrap | None]:
    """Run a campaign with simulated raters whose preferences follow Bradley-Terry with the
    known ``strengths``; returns the votes it took to stop, and the last fit.

    ``policy`` is ``"active"`` (:func:`next_model_pair`) or ``"uniform"`` (the pairs in
    turn). After ``check_every`` more votes (or 5 % more, if that is more) a bootstrap of
    ``samples`` resamples decides which comparisons are settled (the studio's stopping rule,
    at a fixed count for speed).
    """
    from app.core.arena_stats import bradley_terry_bootstrap

    if policy not in ("active", "uniform"):
        raise ValueError(f"policy must be 'active' or 'uniform', got {policy!r}")
    rng = np.random.default_rng(seed)
    models = list(strengths)
    pairs = model_pairs(models)
    anchor = models[0]
    comparisons: list[Comparison] = []
    fit: Bootstrap | None = None
    seen: set[str] = set()
    next_check = check_every
    while len(comparisons) < budget:
        undecided = undecided_pairs(fit, models)
        if policy == "active":
            a, b = next_model_pair(models, comparisons, undecided) or pairs[0]
        else:
            a, b = pairs[len(comparisons) % len(pairs)]
        if rng.random() < 0.5:
            a, b = b, a
        p_a = 1 / (1 + math.exp(strengths[b] - strengths[a]))
        comparisons.append(Comparison(a, b, "a" if rng.random() < p_a else "b"))
        seen.update((a, b))
        if len(comparisons) >= next_check and len(seen) == len(models):
            fit = bradley_terry_bootstrap(
                comparisons, anchor=anchor, samples=samples, seed=int(rng.integers(2**31))
            )
            if stop_reason(fit, models, len(comparisons), budget):
                break
            next_check = max(len(comparisons) + check_every, int(len(comparisons) * 1.05))
    return len(comparisons), fit
