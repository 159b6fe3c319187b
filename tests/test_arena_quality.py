"""Rater quality from raw votes, and which preset's SRP agrees with the raters (by hand)."""

import pytest
from PIL import Image

from app.core import arena, arena_results, arena_stats
from app.core.arena_quality import GOLD_DEGRADED as BAD
from app.core.arena_quality import GOLD_ORIGINAL as GOOD
from app.core.arena_quality import RawVote, counted, rater_quality


def vote(rater, pair, choice, left="base", right="ckpt", kind="pair", original=None):
    return RawVote(rater, pair, kind, "overall", choice, left, right, original)


def test_gold_accuracy_consistency_and_majority_agreement_per_rater():
    votes = [
        # three raters on pair p1 (base left); ann and bob pick ckpt, cid picks base
        vote("ann", "p1", "right"),
        vote("bob", "p1", "right"),
        vote("cid", "p1", "left"),
        # p2: ann ties (abstains), bob and cid pick base
        vote("ann", "p2", "tie"),
        vote("bob", "p2", "left"),
        vote("cid", "p2", "left"),
        # gold pairs: ann right twice, cid picks the degraded copy, bob skips
        vote("ann", "g1", "left", GOOD, BAD, "gold"),
        vote("ann", "g2", "right", BAD, GOOD, "gold"),
        vote("cid", "g1", "left", BAD, GOOD, "gold"),
        vote("bob", "g1", "skip", GOOD, BAD, "gold"),
        # repeats of p1, sides swapped: ann the same model again, cid the other one
        vote("ann", "r1", "left", "ckpt", "base", "repeat", "p1"),
        vote("cid", "r1", "left", "ckpt", "base", "repeat", "p1"),
        # bob repeats a pair he never judged: not counted
        vote("bob", "r2", "left", "ckpt", "base", "repeat", "p9"),
    ]
    quality = rater_quality(votes)
    ann, bob, cid = quality["ann"], quality["bob"], quality["cid"]
    assert (ann.gold, ann.gold_accuracy, cid.gold_accuracy, bob.gold_accuracy) == (2, 1.0, 0, None)
    assert (ann.repeats, ann.consistency, cid.consistency, bob.repeats) == (1, 1.0, 0.0, 0)
    # ann on p1: others bob (ckpt) and cid (base) split, no majority; p2 a tie: nothing
    assert (ann.majority, ann.majority_agreement) == (0, None)
    # bob: p1 others ann ckpt + cid base: split; p2 others cid base: agrees
    assert (bob.majority, bob.majority_agree) == (1, 1)
    # cid: p1 others ann + bob ckpt: disagrees; p2 others bob base: agrees
    assert (cid.majority, cid.majority_agreement) == (2, 0.5)
    assert (ann.votes, bob.votes, cid.votes) == (5, 4, 4)
    kept = counted(votes, excluded=["cid"])
    assert [(v.rater, v.pair_id) for v in kept] == [
        ("ann", "p1"),
        ("bob", "p1"),
        ("ann", "p2"),
        ("bob", "p2"),
    ]


def test_a_gold_pair_shows_a_clearly_degraded_copy():
    import numpy as np

    image = Image.new("RGB", (32, 32))
    image.putdata([(8 * (x % 32), 8 * (x // 32), 128) for x in range(32 * 32)])
    worse = arena.degrade(image, seed=7)
    assert worse.size == image.size
    difference = np.abs(np.asarray(worse, float) - np.asarray(image, float)).mean()
    assert difference > 20
    assert arena.degrade(image, seed=7).tobytes() == worse.tobytes()


def comparison(pair, winner):
    a, b = "base", "ckpt"
    outcome = {"base": "a", "ckpt": "b", None: "tie"}[winner]
    return arena_stats.Comparison(a, b, outcome, pair_id=pair)


def test_preset_agreement_matches_a_hand_computation():
    # raters: p1 ckpt (2 votes to 1), p2 base, p3 split (undecided), p4 ckpt
    votes = [comparison("p1", "ckpt"), comparison("p1", "ckpt"), comparison("p1", "base")]
    votes += [comparison("p2", "base"), comparison("p3", "base"), comparison("p3", "ckpt")]
    votes += [comparison("p4", "ckpt"), comparison("p4", None)]

    def scores(p1, p2, p3, p4):
        """Each pair's (base, ckpt) SRP."""
        pairs = {"p1": p1, "p2": p2, "p3": p3, "p4": p4}
        return {k: {"base": v[0], "ckpt": v[1]} for k, v in pairs.items()}

    by_preset = {
        # warm: ckpt > base on p1 (agree), p2 (disagree), p4 (agree): 2 of 3 decided pairs
        "warm": {
            "srp": scores((0, 1), (0, 1), (0, 1), (0, 1)),
            # its one word pair: p1 agree, p2 agree, p4 a reward tie (undecided): 2 of 2
            "photo / painting": scores((0, 1), (1, 0), (0, 1), (1, 1)),
        },
        # cold: base > ckpt everywhere: p2 agrees only, 1 of 3
        "cold": {"srp": scores((1, 0), (1, 0), (1, 0), (1, 0))},
    }
    rows = arena_results.preset_agreement(votes, by_preset)
    assert [(r["preset"], r["words"], r["agree"], r["decided"]) for r in rows] == [
        ("warm", "photo / painting", 2, 2),
        ("warm", "all words", 2, 3),
        ("cold", "all words", 1, 3),
    ]
    # Wilson 95 % interval of 2 of 3 by hand: centre (p + z^2/2n) / (1 + z^2/n), half width
    # z / (1 + z^2/n) * sqrt(p(1-p)/n + z^2/4n^2)
    z, n, p = 1.959963984540054, 3, 2 / 3
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
    warm = rows[1]
    assert warm["rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert (warm["low"], warm["high"]) == pytest.approx((centre - half, centre + half), abs=1e-4)
    assert rows[0]["rate"] == 1.0 and rows[2]["rate"] == pytest.approx(1 / 3, abs=1e-4)
