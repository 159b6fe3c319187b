"""The ``srpo`` command. Each subcommand is a thin layer over the library's public functions."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


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


def _bench_step(args: argparse.Namespace) -> int:
    from srpo.benchmarks.step import bench_step

    result = bench_step(repeats=args.repeats, batch=args.batch, model=args.model)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def _models(args: argparse.Namespace) -> int:
    from srpo.models.loader import describe_models

    rows = describe_models()
    if args.json:
        print(json.dumps(rows))
    else:
        for row in rows:
            print(f"{row['name']:<11} {row['pipeline']:<26} {row['hub_id'] or '-'}")
    return 0


def _bench_methods(args: argparse.Namespace) -> int:
    from srpo.benchmarks.methods import bench_methods

    result = bench_methods(
        methods=args.methods.split(","),
        lrs=[float(lr) for lr in args.lrs.split(",")],
        budget_seconds=args.budget_seconds,
        grpo_budget_seconds=args.grpo_budget_seconds,
        probe_prompts=args.probe_prompts,
        probe_seconds=args.probe_seconds,
        target_points=args.target_points,
        threads=args.threads,
    )
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def _bench_precision(args: argparse.Namespace) -> int:
    from srpo.benchmarks.precision import bench_precision

    result = bench_precision(steps=args.steps, lr=args.lr)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def _bench_hacking(args: argparse.Namespace) -> int:
    from srpo.benchmarks.hacking import CONTROLLED, bench_hacking

    result = bench_hacking(
        steps=args.steps,
        prompts=args.prompts,
        grid=args.grid,
        include_ablations=not args.no_ablations,
        only=args.only.split(",") if args.only else None,
        controls=() if args.no_controls else CONTROLLED,
    )
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def _tiny_train_biased(args: argparse.Namespace) -> int:
    from srpo.tiny_world.biased import BiasTraining, train_biased

    entry = train_biased(args.weights, BiasTraining(seed=args.seed, steps=args.steps))
    print(json.dumps(entry, indent=None if args.json else 2))
    return 0 if entry["passed"] else 1


def _explain(args: argparse.Namespace) -> int:
    from srpo.config import PRESET_GPUS, PRESETS, load_config, preset
    from srpo.explain import explain, explain_markdown

    config = preset(args.config) if args.config in PRESETS else load_config(args.config)
    processes = args.processes or PRESET_GPUS.get(args.config, 1)
    summary = explain(config, processes=processes)
    print(json.dumps(summary, indent=2) if args.json else explain_markdown(summary))
    return 0


def _tiny_train(args: argparse.Namespace) -> int:
    from srpo.tiny_world.training import train_and_gate

    result = train_and_gate(args.out, seed=args.seed)
    print(json.dumps(result["gates"], indent=None if args.json else 2))
    return 0 if result["gates"]["passed"] else 1


def _tiny_gates(args: argparse.Namespace) -> int:
    from srpo.tiny_world.gates import GateSizes, evaluate

    sizes = GateSizes(images=150, pairs=40, samples=60, batch=30) if args.quick else GateSizes()
    result = evaluate(args.weights, sizes)
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))
        for failure in result["failures"]:
            print(f"FAILED {failure}", file=sys.stderr)
    return 0 if result["passed"] else 1


def _sample(args: argparse.Namespace) -> int:
    from srpo.sampling import labelled_grid, parse_seeds, sample_images

    seeds = parse_seeds(args.seeds)
    if args.checkpoint:
        from srpo.models import load_finetuned

        generator, config = load_finetuned(args.checkpoint)
        defaults = {"steps": config.rollout_steps, "shift": config.shift}
    else:
        from srpo.models import load_generator, sampling_defaults

        generator = load_generator(args.model, args.path)
        defaults = sampling_defaults(args.model, args.path)
    steps = args.steps or int(defaults["steps"])
    shift = args.shift if args.shift is not None else defaults["shift"]
    images = sample_images(generator, [args.prompt] * len(seeds), seeds, steps, shift)
    grid = labelled_grid(images, [f"seed {s}" for s in seeds], title=args.prompt)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    print(f"wrote {out} ({len(seeds)} images, {steps} steps)")
    return 0


def _train(args: argparse.Namespace) -> int:
    from srpo.config import load_config
    from srpo.train import train

    config_path = Path(args.config)
    config = load_config(config_path)
    output = Path(args.output or Path("outputs") / config_path.stem)
    result = train(config, output, config_dir=config_path.parent, show_progress=True)
    where = result.checkpoint.path if result.checkpoint else output
    print(f"{'cancelled' if result.cancelled else 'finished'} at step {result.step}: {where}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from srpo.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(args.checkpoint, prompts=args.prompts)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from srpo.demo import run_demo

    result = run_demo(args.output, prompts=args.prompts)
    print(json.dumps(result, indent=None if args.json else 2))
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
    step = benches.add_parser(
        "step", help="one Direct-Align update vs the bare passes it needs (median seconds)"
    )
    step.add_argument("--json", action="store_true", help="print one JSON object")
    step.add_argument("--repeats", type=int, default=15)
    step.add_argument("--batch", type=int, default=4)
    step.add_argument(
        "--model", default="tiny", help="tiny, or a backend's random small config (srpo models)"
    )
    step.set_defaults(run=_bench_step)
    methods = benches.add_parser(
        "methods", help="training seconds each method needs to reach the same judged shift"
    )
    methods.add_argument("--json", action="store_true", help="print one JSON object")
    methods.add_argument("--methods", default="srpo,direct_align,refl,draft,grpo")
    methods.add_argument("--lrs", default="1e-5,3e-5,1e-4,3e-4", help="lr grid every method races")
    methods.add_argument("--budget-seconds", type=float, default=60.0, help="per method")
    methods.add_argument(
        "--grpo-budget-seconds", type=float, default=None, help="default: 20x SRPO's seconds"
    )
    methods.add_argument("--probe-prompts", type=int, default=48)
    methods.add_argument("--probe-seconds", type=float, default=3.0, help="first probe after")
    methods.add_argument("--target-points", type=float, default=30.0, help="over the base rate")
    methods.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    methods.set_defaults(run=_bench_methods)
    precision = benches.add_parser(
        "precision", help="the bf16 policy against fp32: weight updates and x0 recovery"
    )
    precision.add_argument("--json", action="store_true", help="print one JSON object")
    precision.add_argument("--steps", type=int, default=20, help="AdamW steps per run")
    precision.add_argument("--lr", type=float, default=5e-6)
    precision.set_defaults(run=_bench_precision)
    hacking = benches.add_parser(
        "hacking", help="Table 1 in miniature: every method on the biased tiny reward"
    )
    hacking.add_argument("--json", action="store_true", help="print one JSON object")
    hacking.add_argument("--steps", type=int, default=40, help="updates per method")
    hacking.add_argument("--prompts", type=int, default=64, help="held-out prompts judged")
    hacking.add_argument("--grid", default=None, help="write the PNG grid here")
    hacking.add_argument("--no-ablations", action="store_true")
    hacking.add_argument(
        "--no-controls",
        action="store_true",
        help="skip training rows again on the clean reward (no bias_drift)",
    )
    hacking.add_argument("--only", default=None, help="comma-separated row names")
    hacking.set_defaults(run=_bench_hacking)

    models = commands.add_parser("models", help="the generator backends and their defaults")
    models.add_argument("--json", action="store_true", help="print one JSON list")
    models.set_defaults(run=_models)

    explain = commands.add_parser(
        "explain", help="what a config or preset will do, before any GPU time is spent"
    )
    explain.add_argument("config", help="a YAML config file or a preset name")
    explain.add_argument(
        "--processes", type=int, help="ranks the run will use (default: the preset's GPUs, or 1)"
    )
    explain.add_argument("--json", action="store_true", help="print one JSON object")
    explain.set_defaults(run=_explain)

    tiny = commands.add_parser("tiny-world", help="train or gate the embedded tiny world")
    tiny_commands = tiny.add_subparsers(dest="tiny", required=True)
    world = tiny_commands.add_parser("train", help="train VAE, reward and generator from seeds")
    world.add_argument("--out", default=None, help="weights folder (default: the shipped one)")
    world.add_argument("--seed", type=int, default=0)
    world.add_argument("--json", action="store_true")
    world.set_defaults(run=_tiny_train)
    gates = tiny_commands.add_parser("gates", help="evaluate the quality gates")
    gates.add_argument("--json", action="store_true", help="print one JSON object")
    gates.add_argument("--weights", default=None, help="weights folder (default: shipped)")
    gates.add_argument("--quick", action="store_true", help="smaller held-out sets")
    gates.set_defaults(run=_tiny_gates)
    biased = tiny_commands.add_parser(
        "train-biased", help="fine-tune tiny-biased from the clean reward and gate its bias"
    )
    biased.add_argument("--weights", default=None, help="weights folder (default: shipped)")
    biased.add_argument("--seed", type=int, default=0)
    biased.add_argument("--steps", type=int, default=300)
    biased.add_argument("--json", action="store_true")
    biased.set_defaults(run=_tiny_train_biased)

    train = commands.add_parser("train", help="fine-tune from a YAML config (resumes if it can)")
    train.add_argument("config", help="training config (YAML)")
    train.add_argument("--output", default=None, help="run folder (default: outputs/<config name>)")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser(
        "eval", help="a checkpoint vs its base model on held-out prompts at fixed seeds"
    )
    evaluate.add_argument("--checkpoint", required=True, help="a checkpoints/step-N folder")
    evaluate.add_argument(
        "--prompts", type=int, default=96, help="held-out prompts (one seed each)"
    )
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(run=_eval)

    demo = commands.add_parser("demo", help="the tiny-world SRPO demo, judged before and after")
    demo.add_argument("--output", default=None, help="keep the run here (default: a temp dir)")
    demo.add_argument("--prompts", type=int, default=96, help="held-out prompts (one seed each)")
    demo.add_argument("--json", action="store_true", help="print one JSON object")
    demo.set_defaults(run=_demo)

    sample = commands.add_parser("sample", help="write a labelled grid of samples")
    sample.add_argument("--model", default="tiny", help="tiny or flux")
    sample.add_argument("--path", default=None, help="weights folder or hub id")
    sample.add_argument("--checkpoint", default=None, help="a fine-tune's checkpoint folder")
    sample.add_argument("--prompt", required=True)
    sample.add_argument("--seeds", default="0-7", help="e.g. 0-7 or 1,5,9")
    sample.add_argument("--steps", type=int, default=None)
    sample.add_argument("--shift", type=float, default=None)
    sample.add_argument("--out", default="grid.png")
    sample.set_defaults(run=_sample)
    _register_plugins(commands)
    return parser


def _register_plugins(commands: argparse._SubParsersAction) -> None:
    """Subcommands other installed packages add (``srpo.commands`` entry points, e.g. studio).

    Each entry point is a ``register(commands)`` function; srpo itself names none of them.
    """
    from importlib.metadata import entry_points

    for entry in entry_points(group="srpo.commands"):
        entry.load()(commands)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run, and turn expected errors into one-line messages."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"srpo: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
