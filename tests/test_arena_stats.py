"""Arena statistics: Wilson intervals, Bradley-Terry with bootstrap, agreement, export."""

import csv
import io
import json
import math

import numpy as np
import pytest

from app.core import arena_agreement, arena_export
from app.core import arena_stats as st
from app.core.arena_stats import Comparison

TRUE = {"base": 0.0, "step10": 0.7, "step20": 1.2, "step40": -0.5}


def simulate(n: int, seed: int, strengths=TRUE) -> list[Comparison]:
    """Comparisons drawn from a Bradley-Terry model with known log-strengths (no ties)."""
    rng = np.random.default_rng(seed)
    models = list(strengths)
    out = []
    for _ in range(n):
        i, j = rng.choice(len(models), 2, replace=False)
        a, b = models[i], models[j]
        p_a = 1 / (1 + math.exp(strengths[b] - strengths[a]))
        out.append(Comparison(a, b, "a" if rng.random() < p_a else "b"))
    return out


def test_wilson_interval_matches_the_formula_and_the_textbook_value():
    z = 1.959963984540054
    p, n = 0.8, 10
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    low, high = st.wilson_interval(8, 10)
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert st.wilson_interval(0, 0) == (0.0, 1.0)
    assert st.wilson_interval(0, 5)[0] == 0.0 and st.wilson_interval(5, 5)[1] == 1.0
    low90, high90 = st.wilson_interval(8, 10, confidence=0.90)
    assert low < low90 < high90 < high
    with pytest.raises(ValueError, match="successes"):
        st.wilson_interval(11, 10)


def test_win_rates_count_ties_as_half_or_leave_them_out():
    votes = [Comparison("x", "y", "a")] * 6 + [Comparison("y", "x", "a")] * 2
    votes += [Comparison("x", "y", "tie")] * 2
    half = st.win_rates(votes)
    assert (half["x"].wins, half["x"].losses, half["x"].ties) == (6, 2, 2)
    assert half["x"].rate == pytest.approx(7 / 10)
    assert (half["x"].low, half["x"].high) == pytest.approx(st.wilson_interval(7, 10))
    assert half["y"].rate == pytest.approx(3 / 10)
    excluded = st.win_rates(votes, ties="exclude")
    assert excluded["x"].rate == pytest.approx(6 / 8)
    assert (excluded["x"].low, excluded["x"].high) == pytest.approx(st.wilson_interval(6, 8))
    pairwise = st.pairwise_win_rates([*votes, Comparison("x", "z", "b")])
    assert pairwise[("x", "y")].rate == pytest.approx(0.7)
    assert pairwise[("z", "x")].rate == 1.0 and pairwise[("x", "z")].wins == 0
    only_ties = st.win_rates([Comparison("x", "y", "tie")], ties="exclude")
    assert math.isnan(only_ties["x"].rate) and (only_ties["x"].low, only_ties["x"].high) == (0, 1)
    with pytest.raises(ValueError, match="ties"):
        st.win_rates(votes, ties="drop")


def test_votes_map_to_comparisons_with_sides_and_both_bad_as_tie():
    left = st.comparison_from_vote("base", "ckpt", "left", "b.png", "c.png", prompt="p")
    assert (left.winner, left.loser, left.image_a, left.prompt) == ("base", "ckpt", "b.png", "p")
    assert st.comparison_from_vote("base", "ckpt", "right").winner == "ckpt"
    assert st.comparison_from_vote("base", "ckpt", "both_bad").outcome == "tie"
    assert st.comparison_from_vote("base", "ckpt", "skip") is None
    with pytest.raises(ValueError, match="vote must be one of"):
        st.comparison_from_vote("base", "ckpt", "maybe")
    with pytest.raises(ValueError, match="two different models"):
        Comparison("base", "base", "a")


def test_bradley_terry_recovers_order_and_strength_ratios():
    votes = simulate(4000, seed=3)
    scores = st.bradley_terry(votes, anchor="base", prior=0.0)
    assert scores["base"] == 0.0
    assert sorted(scores, key=scores.get) == sorted(TRUE, key=TRUE.get)
    for model in TRUE:
        assert scores[model] == pytest.approx(TRUE[model], abs=0.15)
    ratio = math.exp(scores["step20"] - scores["step40"])
    assert ratio == pytest.approx(math.exp(1.7), rel=0.2)
    centred = st.bradley_terry(votes, prior=0.0)
    assert sum(centred.values()) == pytest.approx(0.0, abs=1e-9)
    assert centred["step20"] - centred["base"] == pytest.approx(scores["step20"], abs=1e-9)


def test_bradley_terry_is_the_maximum_likelihood_point():
    votes = simulate(300, seed=5)
    scores = st.bradley_terry(votes, prior=0.0)

    def log_likelihood(theta):
        return sum(
            -math.log1p(math.exp(theta[c.loser] - theta[c.winner])) for c in votes if c.winner
        )

    best = log_likelihood(scores)
    for model in scores:
        for delta in (-0.01, 0.01):
            moved = dict(scores, **{model: scores[model] + delta})
            assert log_likelihood(moved) < best


def test_ties_count_as_half_a_win_each_in_bradley_terry():
    base = simulate(200, seed=7)
    with_ties = [*base, *[Comparison("base", "step10", "tie")] * 2]
    with_split = [*base, Comparison("base", "step10", "a"), Comparison("base", "step10", "b")]
    tied, split = st.bradley_terry(with_ties), st.bradley_terry(with_split)
    assert tied == pytest.approx(split, abs=1e-9)
    all_ties = st.bradley_terry([Comparison("x", "y", "tie")] * 5, prior=0.0)
    assert all_ties == pytest.approx({"x": 0.0, "y": 0.0})


def test_bradley_terry_degenerate_cases_need_the_prior():
    sweep = [Comparison("x", "y", "a")] * 10
    with pytest.raises(ValueError, match="unbounded"):
        st.bradley_terry(sweep, prior=0.0)
    shrunk = st.bradley_terry(sweep, anchor="y")
    assert shrunk["x"] == pytest.approx(math.log(10.5 / 0.5), abs=1e-6)
    islands = [Comparison("x", "y", "a"), Comparison("y", "x", "a")] * 3
    islands += [Comparison("u", "v", "a"), Comparison("v", "u", "a")]
    with pytest.raises(ValueError, match="do not connect"):
        st.bradley_terry(islands, prior=0.0)
    assert set(st.bradley_terry(islands)) == {"u", "v", "x", "y"}
    with pytest.raises(ValueError, match="anchor"):
        st.bradley_terry(sweep, anchor="z")
    with pytest.raises(ValueError, match="no comparisons"):
        st.bradley_terry([])


def test_bootstrap_intervals_contain_the_truth_and_are_reproducible():
    votes = simulate(1500, seed=11)
    fitted = st.bradley_terry_bootstrap(votes, anchor="base", prior=0.0, samples=300, seed=1)
    intervals = fitted.scores
    assert fitted.samples == 300 and fitted.comparisons == 1500
    point = st.bradley_terry(votes, anchor="base", prior=0.0)
    for model, truth in TRUE.items():
        entry = intervals[model]
        assert entry.score == pytest.approx(point[model])
        assert entry.low <= truth <= entry.high
        assert entry.low <= entry.score <= entry.high
    assert intervals["base"].low == intervals["base"].high == 0.0
    assert 0.1 < intervals["step20"].high - intervals["step20"].low < 0.6
    again = st.bradley_terry_bootstrap(votes, anchor="base", prior=0.0, samples=300, seed=1)
    assert again == fitted
    other = st.bradley_terry_bootstrap(votes, anchor="base", prior=0.0, samples=300, seed=2)
    assert other.scores != intervals
    narrow = st.bradley_terry_bootstrap(
        votes, anchor="base", prior=0.0, samples=300, seed=1, confidence=0.5
    ).scores
    assert (
        narrow["step20"].high - narrow["step20"].low
        < intervals["step20"].high - intervals["step20"].low
    )


def test_bootstrap_differences_are_decided_when_their_interval_excludes_zero():
    votes = simulate(1500, seed=11)
    fitted = st.bradley_terry_bootstrap(votes, anchor="base", samples=2000, seed=3)
    assert set(fitted.differences) == {
        (a, b) for i, a in enumerate(sorted(TRUE)) for b in sorted(TRUE)[i + 1 :]
    }
    far = fitted.differences[("base", "step20")]
    assert far.decided and far.winner == "step20" and far.high < 0
    # against the anchor, a difference is the other model's score with its sign flipped
    assert far.low == pytest.approx(-fitted.scores["step20"].high)
    close = st.bradley_terry_bootstrap(
        [Comparison("x", "y", "a"), Comparison("x", "y", "b")] * 3, samples=500
    )
    assert not close.differences[("x", "y")].decided
    assert close.differences[("x", "y")].winner is None


def test_one_vote_does_not_decide_a_comparison():
    # A bootstrap of one vote has a zero-width interval away from 0; the browser test caught
    # the arena telling raters "every comparison is decided" after a single vote.
    one = st.bradley_terry_bootstrap([Comparison("base", "tuned", "b")], anchor="base", seed=1)
    assert one.differences[("base", "tuned")].votes == 1
    assert not one.differences[("base", "tuned")].decided
    many = st.bradley_terry_bootstrap(
        [Comparison("base", "tuned", "b")] * 40, anchor="base", samples=500, seed=1
    )
    assert many.differences[("base", "tuned")].decided


def test_the_adaptive_bootstrap_draws_until_the_ends_are_stable_to_a_hundredth():
    votes = simulate(400, seed=4)
    first = st.bradley_terry_bootstrap(votes, anchor="base", seed=0)
    second = st.bradley_terry_bootstrap(votes, anchor="base", seed=1)
    target = st.BOOTSTRAP_TOLERANCE / (1.96 * math.sqrt(2))
    for fitted in (first, second):
        assert fitted.samples > st.BOOTSTRAP_START and fitted.precision <= target
    # two seeds differ by at most 0.01 with 95 % chance per end; 0.02 is ~4 standard errors
    # of the difference, and the seeds are fixed, so this does not flake
    for model in TRUE:
        for end in ("low", "high"):
            a = getattr(first.scores[model], end)
            b = getattr(second.scores[model], end)
            assert abs(a - b) <= 2 * st.BOOTSTRAP_TOLERANCE
    capped = st.bradley_terry_bootstrap(votes, anchor="base", seed=0, max_samples=500)
    assert capped.samples == 500 and capped.precision > target


def pair_votes(pair_id: str, outcomes: str) -> list[Comparison]:
    """Votes on one pair by several raters; sides alternate as in a blind arena."""
    votes = []
    for n, outcome in enumerate(outcomes):
        winner = {"B": "base", "C": "ckpt"}.get(outcome)
        a, b = ("base", "ckpt") if n % 2 == 0 else ("ckpt", "base")
        side = "tie" if winner is None else ("a" if winner == a else "b")
        votes.append(Comparison(a, b, side, pair_id=pair_id, rater=f"r{n}"))
    return votes


def test_agreement_compares_the_reward_winner_with_the_majority_of_raters():
    votes = pair_votes("p1", "CCB") + pair_votes("p2", "BBT") + pair_votes("p3", "CBT")
    votes += pair_votes("p4", "CC") + pair_votes("p5", "BCCT")
    scores = {
        "p1": {"base": 0.2, "ckpt": 0.5},  # raters ckpt, reward ckpt: agree
        "p2": {"base": 0.1, "ckpt": 0.3},  # raters base, reward ckpt: disagree
        "p3": {"base": 0.9, "ckpt": 0.1},  # raters split: undecided
        "p4": {"base": 0.4, "ckpt": 0.4},  # reward tie: undecided
        "p5": {"base": 0.0, "ckpt": 1.0},  # raters ckpt (2 vs 1, tie abstains): agree
    }
    result = arena_agreement.human_reward_agreement(votes, scores)
    assert (result.agree, result.decided, result.undecided) == (2, 3, 2)
    assert result.rate == pytest.approx(2 / 3)
    assert (result.low, result.high) == pytest.approx(st.wilson_interval(2, 3))
    with pytest.raises(ValueError, match="no reward scores"):
        arena_agreement.human_reward_agreement(
            votes, {k: v for k, v in scores.items() if k != "p2"}
        )
    with pytest.raises(ValueError, match="pair_id"):
        arena_agreement.human_reward_agreement([Comparison("x", "y", "a")], {})
    with pytest.raises(ValueError, match="different models"):
        arena_agreement.human_reward_agreement(
            [*votes, Comparison("x", "y", "a", pair_id="p1")], scores
        )


def arena_votes() -> list[Comparison]:
    return [
        Comparison(
            "base", "ckpt", "b", 'a cat, "fluffy"', "p1", "realism", "ann", "b1.png", "c1.png"
        ),
        Comparison("ckpt", "base", "tie", "a dog", "p2", "realism", "bob", "c2.png", "b2.png"),
        Comparison(
            "ckpt", "base", "b", '=HYPERLINK("x")', "p3", "overall", None, "c3.png", "b3.png"
        ),
    ]


def test_preference_rows_export_to_jsonl_and_csv(tmp_path):
    rows = arena_export.preference_rows(arena_votes())
    assert [(r["prompt"], r["winner"], r["loser"]) for r in rows] == [
        ('a cat, "fluffy"', "c1.png", "b1.png"),
        ('=HYPERLINK("x")', "b3.png", "c3.png"),
    ]
    assert rows[0]["winner_model"] == "ckpt" and rows[1]["rater"] == ""
    jsonl = arena_export.to_jsonl(rows)
    assert [json.loads(line) for line in jsonl.splitlines()] == rows
    parsed = list(csv.DictReader(io.StringIO(arena_export.to_csv(rows))))
    assert tuple(parsed[0]) == arena_export.PREFERENCE_FIELDS
    assert parsed[0]["prompt"] == 'a cat, "fluffy"'
    assert parsed[1]["prompt"] == '\'=HYPERLINK("x")'
    assert arena_export.write_preference_dataset(arena_votes(), tmp_path / "prefs.jsonl") == 2
    assert (tmp_path / "prefs.jsonl").read_text(encoding="utf-8") == jsonl
    assert arena_export.write_preference_dataset(arena_votes(), tmp_path / "prefs.csv") == 2
    assert list(csv.DictReader((tmp_path / "prefs.csv").open(newline=""))) == parsed
    with pytest.raises(ValueError, match="format"):
        arena_export.write_preference_dataset(arena_votes(), tmp_path / "prefs.txt")
    with pytest.raises(ValueError, match="no image references"):
        arena_export.preference_rows([Comparison("x", "y", "a", pair_id="p9")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prefs.csv", "prefs.jsonl"]
