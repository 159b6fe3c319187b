"""Votes to decide a campaign: active pair sampling against uniform, on simulated raters.

Simulated raters prefer one model over another as Bradley-Terry says with known strengths
(:func:`app.core.arena_sampling.simulate`). Each policy runs ``--runs`` campaigns (seeds
0..runs-1, the same seeds for both) until the stopping rule ends sampling (every comparison
decided) or ``--budget`` votes are spent. Printed as one JSON object: per policy the votes
to stop (each run, mean, median), how many runs hit the budget, the share of decided
comparisons whose winner is the stronger model; and ``ratio``, mean votes active / uniform
(below 1: active sampling needs fewer votes).

    PYTHONPATH=. .venv/bin/python bench/arena_sampling.py [--runs 8] [--budget 3000]
        [--strengths base=0,a=0.4,b=1.2,c=2.0] [--samples 1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from app.core import arena_sampling

DEFAULT_STRENGTHS = "base=0,a=0.4,b=1.2,c=2.0"


def parse_strengths(text: str) -> dict[str, float]:
    """``name=strength,...`` as a dict (the first name is the anchor)."""
    out = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        out[name.strip()] = float(value)
    if len(out) < 2:
        raise SystemExit("--strengths: at least two models, as name=strength,...")
    return out


def run_policy(
    strengths: dict[str, float], policy: str, runs: int, budget: int, samples: int
) -> dict:
    """Votes to stop for ``runs`` simulated campaigns under ``policy``."""
    votes, hit_budget, decided, right = [], 0, 0, 0
    for seed in range(runs):
        used, fit = arena_sampling.simulate(strengths, policy, seed, budget=budget, samples=samples)
        votes.append(used)
        hit_budget += used >= budget
        for diff in fit.differences.values() if fit else ():
            if diff.decided:
                decided += 1
                right += strengths[diff.winner] == max(strengths[diff.a], strengths[diff.b])
    return {
        "votes": votes,
        "mean": round(statistics.fmean(votes), 1),
        "median": statistics.median(votes),
        "runs_at_budget": hit_budget,
        "decided_right": round(right / decided, 3) if decided else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--budget", type=int, default=3000)
    parser.add_argument("--samples", type=int, default=1000, help="bootstrap resamples per check")
    parser.add_argument("--strengths", default=DEFAULT_STRENGTHS)
    args = parser.parse_args()
    strengths = parse_strengths(args.strengths)
    started = time.perf_counter()
    out = {
        "strengths": strengths,
        "runs": args.runs,
        "budget": args.budget,
        "samples": args.samples,
    }
    for policy in ("active", "uniform"):
        out[policy] = run_policy(strengths, policy, args.runs, args.budget, args.samples)
    out["ratio"] = round(out["active"]["mean"] / out["uniform"]["mean"], 3)
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
