"""The ``srpo`` command. Each subcommand is a thin layer over the library's public functions."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def _bench_recovery(args: argparse.Namespace) -> int:
    from srpo.recovery import recovery_mse

    rows = [
        recovery_mse(sigma, d, samples=args.samples, seed=args.seed)
        for sigma in (0.5, 0.75, 0.95)
        for d in (0.025, 0.075)
    ]
    for row in rows:
        if args.json:
            print(json.dumps(row))
        else:
            print(
                f"sigma={row['sigma']:.2f} d={row['d']:.3f} naive={row['mse_naive']:.4f} "
                f"direct_align={row['mse_direct_align']:.4f}"
            )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="srpo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    bench = commands.add_parser("bench", help="measure the method and the implementation")
    benches = bench.add_subparsers(dest="bench", required=True)
    recovery = benches.add_parser(
        "recovery", help="Monte-Carlo MSE of naive vs Direct-Align recovery of x0"
    )
    recovery.add_argument("--json", action="store_true", help="one JSON object per line")
    recovery.add_argument("--samples", type=int, default=200_000)
    recovery.add_argument("--seed", type=int, default=0)
    recovery.set_defaults(run=_bench_recovery)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run, and turn expected errors into one-line messages."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"srpo: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
