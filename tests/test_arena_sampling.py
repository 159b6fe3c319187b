"""Active pair sampling, the stopping rule and the verdicts in words."""

import pytest

from app.core import arena_sampling as sampling
from app.core import arena_stats as st
from app.core.arena_stats import Comparison

STRENGTHS = {"base": 0.0, "a": 0.4, "b": 1.2, "c": 2.0}


def test_active_sampling_decides_with_fewer_votes_than_uniform_sampling():
    # raters follow Bradley-Terry with known strengths; uniform sampling spends most votes on
    # pairs already decided, active sampling on the widest undecided interval
    seeds = range(4)
    active = [sampling.simulate(STRENGTHS, "active", s, budget=1500, samples=500) for s in seeds]
    uniform = [sampling.simulate(STRENGTHS, "uniform", s, budget=1500, samples=500) for s in seeds]
    for votes, fit in (*active, *uniform):
        if votes < 1500:  # stopped by the rule: every comparison decided
            assert sampling.undecided_pairs(fit, list(STRENGTHS)) == []
    assert sum(v for v, _ in active) < sum(v for v, _ in uniform)
    decided = [d for _, fit in active for d in fit.differences.values() if d.decided]
    right = [d for d in decided if STRENGTHS[d.winner] == max(STRENGTHS[d.a], STRENGTHS[d.b])]
    assert len(right) >= 0.9 * len(decided)
    with pytest.raises(ValueError, match="policy"):
        sampling.simulate(STRENGTHS, "greedy", 0)


def test_the_next_pair_is_the_one_that_shrinks_the_widest_undecided_interval():
    models = ["base", "x", "y"]
    votes = [Comparison("base", "x", "a"), Comparison("base", "x", "b")] * 20
    votes += [Comparison("x", "y", "a"), Comparison("x", "y", "b")] * 20
    # base-y was never shown: the widest interval, and a vote on it shrinks it most
    undecided = sampling.model_pairs(models)
    assert sampling.next_model_pair(models, votes, undecided) == ("base", "y")
    # only what a rater can still be shown counts
    assert sampling.next_model_pair(models, votes, undecided, [("base", "x")]) == ("base", "x")
    assert sampling.next_model_pair(models, votes, []) is None


def test_sampling_stops_when_every_comparison_is_decided_or_the_budget_is_spent():
    models = ["base", "x"]
    one_sided = [Comparison("base", "x", "b")] * 40
    fit = st.bradley_terry_bootstrap(one_sided, anchor="base", samples=500)
    assert sampling.undecided_pairs(fit, models) == []
    assert sampling.stop_reason(fit, models, 40, None) == "every comparison is decided"
    even = [Comparison("base", "x", "a"), Comparison("base", "x", "b")] * 5
    open_fit = st.bradley_terry_bootstrap(even, anchor="base", samples=500)
    assert sampling.stop_reason(open_fit, models, 10, None) is None
    assert sampling.stop_reason(open_fit, models, 10, 10) == "the vote budget of 10 is spent"
    assert sampling.stop_reason(None, models, 0, None) is None


def test_verdicts_say_who_wins_or_how_many_votes_are_missing():
    labels = {"base": "base", "x": "demo · step 4"}
    decided = st.bradley_terry_bootstrap(
        [Comparison("base", "x", "b")] * 40, anchor="base", samples=500
    )
    (line,) = sampling.verdicts(decided, ["base", "x"], "realism", labels)
    assert line.startswith("demo · step 4 beats base on realism (95 % interval excludes 0")
    close = [Comparison("base", "x", "b")] * 6 + [Comparison("base", "x", "a")] * 4
    fit = st.bradley_terry_bootstrap(close, anchor="base", samples=2000)
    (line,) = sampling.verdicts(fit, ["base", "x"], "realism", labels)
    diff = fit.differences[("base", "x")]
    more = sampling.votes_needed(diff.score, diff.low, diff.high, 10)
    assert line == (
        f"demo · step 4 vs base on realism: not decided yet: about {more} more votes needed."
    )
    # an interval of half-width h around d shrinks as 1/sqrt(n): n (h/d)^2 - n more votes
    assert sampling.votes_needed(0.5, -0.5, 1.5, 100) == 300
    assert sampling.votes_needed(0.5, 0.1, 0.9, 100) == 0
    assert sampling.votes_needed(0.0, -1.0, 1.0, 100) is None
    tied = st.bradley_terry_bootstrap([Comparison("base", "x", "tie")] * 4, samples=200)
    assert "no difference so far" in sampling.verdicts(tied, ["base", "x"], "overall")[0]
    assert "no votes" in sampling.verdicts(None, ["base", "x"], "overall")[0]
