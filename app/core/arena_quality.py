"""Rater quality from raw votes (pure functions): gold accuracy, consistency on repeated pairs,
agreement with the other raters' majority.

A *gold* pair shows an image against a clearly degraded copy of it (models
:data:`GOLD_ORIGINAL` and :data:`GOLD_DEGRADED`): the right answer is the original. A
*repeat* pair shows a pair the rater has judged before, sides swapped; the rater is
consistent when they pick the same model (or a tie) again. Skips count nowhere.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

GOLD_ORIGINAL = "gold:original"
GOLD_DEGRADED = "gold:degraded"


@dataclass(frozen=True)
class RawVote:
    """One stored vote with its pair, unblinded.

    ``kind`` is ``pair``, ``gold`` or ``repeat``; ``original`` is the id of the pair a repeat
    repeats (``None`` otherwise).
    """

    rater: str
    pair_id: str
    kind: str
    criterion: str
    choice: str
    left_model: str
    right_model: str
    original: str | None = None

    @property
    def picked(self) -> str | None:
        """The chosen model, ``"tie"`` for tie or both bad, ``None`` for a skip."""
        if self.choice == "skip":
            return None
        return {"left": self.left_model, "right": self.right_model}.get(self.choice, "tie")


@dataclass(frozen=True)
class RaterQuality:
    """One rater's record. Each rate is ``None`` when the rater has no vote of that kind."""

    rater: str
    votes: int
    gold: int
    gold_correct: int
    repeats: int
    repeats_consistent: int
    majority: int
    majority_agree: int

    @staticmethod
    def _rate(hits: int, n: int) -> float | None:
        return hits / n if n else None

    @property
    def gold_accuracy(self) -> float | None:
        """Share of gold pairs where the original was picked."""
        return self._rate(self.gold_correct, self.gold)

    @property
    def consistency(self) -> float | None:
        """Share of repeated pairs answered as the first time."""
        return self._rate(self.repeats_consistent, self.repeats)

    @property
    def majority_agreement(self) -> float | None:
        """Share of decided votes that match the other raters' strict majority on the pair."""
        return self._rate(self.majority_agree, self.majority)


def rater_quality(votes: Sequence[RawVote]) -> dict[str, RaterQuality]:
    """Gold accuracy, consistency and majority agreement of every rater who voted.

    Majority agreement counts a rater's win votes on ordinary pairs whose other raters
    (leave-one-out, same criterion) have a strict majority winner; ties abstain.
    """
    first = {
        (v.rater, v.pair_id, v.criterion): v.picked
        for v in votes
        if v.kind == "pair" and v.picked is not None
    }
    winners: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for v in votes:
        if v.kind == "pair" and v.picked not in (None, "tie"):
            winners[(v.pair_id, v.criterion)][v.picked] += 1
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * 7)
    for v in votes:
        tally = counts[v.rater]
        tally[0] += 1
        picked = v.picked
        if picked is None:
            continue
        if v.kind == "gold":
            tally[1] += 1
            tally[2] += picked == GOLD_ORIGINAL
        elif v.kind == "repeat":
            before = first.get((v.rater, v.original or "", v.criterion))
            if before is not None:
                tally[3] += 1
                tally[4] += before == picked
        elif picked != "tie":
            others = winners[(v.pair_id, v.criterion)].copy()
            others[picked] -= 1
            ranked = others.most_common(2)
            if ranked and ranked[0][1] > 0 and (len(ranked) == 1 or ranked[0][1] > ranked[1][1]):
                tally[5] += 1
                tally[6] += ranked[0][0] == picked
    return {rater: RaterQuality(rater, *counts[rater]) for rater in sorted(counts)}


def counted(votes: Iterable[RawVote], excluded: Iterable[str] = ()) -> list[RawVote]:
    """The votes the results count: ordinary pairs, no skips, no excluded rater."""
    left_out = set(excluded)
    return [v for v in votes if v.kind == "pair" and v.choice != "skip" and v.rater not in left_out]
