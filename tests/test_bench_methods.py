"""The methods bench: probe schedule, stopping rule, lr choice and the JSON it prints."""

import json
from pathlib import Path

from srpo.benchmarks.methods import Race, bench_methods, best_trial
from srpo.checkpoints import Checkpoint


def small(world):
    return {
        "model_path": str(world),
        "reward_path": str(world),
        "rollout_steps": 3,
        "batch_size": 2,
        "baselines": {
            "refl_steps": 4,
            "draft_steps": 3,
            "grpo_steps": 4,
            "grpo_group_size": 2,
            "grpo_samples_per_step": 2,
        },
    }


def checkpoint(step):
    return Checkpoint(Path(f"step-{step}"), step, "full", {})


def test_race_probes_at_growing_intervals_and_stops_at_the_target():
    rates = iter([0.1, 0.2, 0.6])
    race = Race(
        lambda c: {"judged_positive_rate": next(rates), "prompt_fidelity": 0.5},
        target=0.5,
        budget=100.0,
        interval=2.0,
        growth=1.5,
    )
    for step, seconds in enumerate([1.0, 2.0, 3.0, 3.9, 4.0, 6.0], start=1):
        assert not race.should_cancel()
        race.seconds = seconds
        race.on_checkpoint(checkpoint(step))
    assert [p.updates for p in race.probes] == [2, 5, 6]
    assert race.reached and race.should_cancel()
    race.on_checkpoint(checkpoint(6))
    assert len(race.probes) == 3


def test_race_probes_once_more_when_the_budget_runs_out():
    race = Race(
        lambda c: {"judged_positive_rate": 0.0, "prompt_fidelity": 1.0},
        target=1.0,
        budget=5.0,
        interval=10.0,
    )
    race.seconds = 5.5
    race.on_checkpoint(checkpoint(3))
    assert len(race.probes) == 1 and not race.reached and race.should_cancel()


def trial(lr, reached, seconds, best):
    return {
        "lr": lr,
        "reached": reached,
        "seconds_to_target": seconds if reached else None,
        "best_judged_positive_rate": best,
    }


def test_best_trial_is_the_fastest_to_target_else_the_highest_rate_ties_to_smaller_lr():
    trials = [
        trial(3e-4, False, None, 0.9),
        trial(1e-4, True, 20.0, 0.6),
        trial(3e-5, True, 12.0, 0.6),
        trial(1e-5, True, 12.0, 0.6),
    ]
    assert best_trial(trials)["lr"] == 1e-5
    assert best_trial([trial(1e-4, False, None, 0.3), trial(1e-5, False, None, 0.4)])["lr"] == 1e-5
    assert best_trial([trial(1e-4, False, None, 0.4), trial(1e-5, False, None, 0.4)])["lr"] == 1e-5


def test_a_target_below_the_base_is_reached_at_the_first_probe(smoke_world):
    result = bench_methods(
        methods=("srpo", "grpo"),
        lrs=(1e-3,),
        budget_seconds=60.0,
        probe_prompts=4,
        probe_seconds=1e-3,
        target_points=-100.0,
        overrides=small(smoke_world),
    )
    json.dumps(result)
    for row in result["methods"].values():
        assert row["reached"] and row["updates"] == 1 and row["probes"] == 1
        assert row["seconds_to_target"] == row["seconds"] > 0
        assert row["previous_probe_seconds"] == 0.0
        assert [t["lr"] for t in row["trials"]] == [1e-3]
    assert result["grpo_over_srpo"]["ratio"] > 0 and not result["grpo_over_srpo"]["lower_bound"]


def test_an_unreachable_target_is_reported_after_the_budget(smoke_world):
    result = bench_methods(
        methods=("srpo", "refl", "grpo"),
        lrs=(1e-4, 1e-3),
        budget_seconds=1e-3,
        probe_prompts=4,
        target_points=200.0,
        overrides=small(smoke_world),
    )
    json.dumps(result)
    for row in result["methods"].values():
        assert not row["reached"] and row["seconds_to_target"] is None
        assert row["seconds"] >= row["budget_seconds"] and row["updates"] >= 1
        assert [t["lr"] for t in row["trials"]] == [1e-3, 1e-4]
        assert row["lr"] in {t["lr"] for t in row["trials"]}
    assert result["grpo_over_srpo"]["ratio"] is None
    assert not result["grpo_over_srpo"]["goal_met"]
