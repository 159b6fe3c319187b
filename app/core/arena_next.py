"""Which pair a rater sees next: active sampling among the ordinary pairs, gold and repeat
pairs mixed in blind at the campaign's rates, and the stopping rule.

An ordinary pair is drawn from the model pair that most shrinks the widest undecided
interval (:func:`app.core.arena_sampling.next_model_pair`), among the pairs this rater has
not judged. A repeat pair is shown only after its original. Sampling ends once every
comparison is decided or the vote budget is spent (:func:`app.core.arena_results.sampling_fit`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core import arena, arena_results, arena_sampling
from app.core.errors import StudioError
from app.core.models import CampaignState, Comparison, Vote


@dataclass(frozen=True)
class NextPair:
    """The pair to show (``None``: nothing to rate, and ``reason`` says why), with how many
    pairs of the campaign this rater has judged on the criterion, of how many."""

    pair: Comparison | None
    judged: int
    total: int
    reason: str | None = None


def next_pair(
    session: Session,
    campaign_id: int,
    rater_id: int,
    criterion: str,
    rng: random.Random | None = None,
) -> NextPair:
    """The next blind pair of the campaign for this rater on ``criterion``; ``rng`` draws the
    kind of pair and the pair (default: the system's randomness, which raters cannot guess)."""
    found = arena_results.campaign(session, campaign_id)
    if criterion not in found.criteria:
        raise StudioError(f"criterion: this campaign asks about {', '.join(found.criteria)}")
    rows = session.execute(
        select(
            Comparison.id,
            Comparison.prompt_index,
            Comparison.seed,
            Comparison.pair_key,
            Comparison.left_model,
            Comparison.right_model,
        ).where(Comparison.campaign_id == campaign_id)
    ).all()
    judged = set(
        session.scalars(
            select(Vote.comparison_id)
            .join(Comparison, Comparison.id == Vote.comparison_id)
            .where(
                Comparison.campaign_id == campaign_id,
                Vote.rater_id == rater_id,
                Vote.criterion == criterion,
            )
        )
    )
    count = NextPair(None, len(judged), len(rows))
    if found.state != CampaignState.READY:
        return _none(count, "this campaign is not open for votes yet")
    by_key = {(r.prompt_index, r.seed, r.pair_key): r.id for r in rows}
    open_rows = [r for r in rows if r.id not in judged]
    real = [r for r in open_rows if arena.pair_kind(r.pair_key) == "pair"]
    gold = [r for r in open_rows if arena.pair_kind(r.pair_key) == "gold"]
    repeats = [
        r
        for r in open_rows
        if arena.pair_kind(r.pair_key) == "repeat"
        and by_key.get((r.prompt_index, r.seed, r.pair_key.removeprefix(arena.REPEAT_PREFIX)))
        in judged
    ]
    if not open_rows:
        return _none(count, f"you have judged every pair of this campaign for {criterion}")
    votes, quick, stopped = arena_results.sampling_fit(session, found, criterion)
    if stopped:
        return _none(count, f"this campaign has enough votes on {criterion}: {stopped}")
    draw = rng or random.SystemRandom()
    chance = draw.random()
    gold_rate = arena.option(found, "gold_rate")
    if not real:
        pool = repeats or gold
    elif chance < gold_rate and gold:
        pool = gold
    elif chance < gold_rate + arena.option(found, "repeat_rate") and repeats:
        pool = repeats
    else:
        pool = _active(found.models, real, votes, quick)
    if not pool:
        return _none(count, f"you have judged every pair of this campaign for {criterion}")
    return NextPair(session.get(Comparison, draw.choice(pool).id), count.judged, count.total)


def _none(count: NextPair, reason: str) -> NextPair:
    return NextPair(None, count.judged, count.total, reason)


def _active(models, real, votes, quick) -> list:
    """The open ordinary pairs of the model pair whose vote most shrinks the widest interval."""
    index = {m: i for i, m in enumerate(models)}

    def model_pair(row) -> tuple[str, str]:
        return tuple(sorted((row.left_model, row.right_model), key=index.__getitem__))

    available = sorted({model_pair(r) for r in real}, key=lambda p: (index[p[0]], index[p[1]]))
    undecided = arena_sampling.undecided_pairs(quick, models)
    chosen = arena_sampling.next_model_pair(models, votes, undecided or available, available)
    return [r for r in real if model_pair(r) == chosen]
