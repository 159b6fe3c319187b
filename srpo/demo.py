"""The tiny-world SRPO demo: judge the base model, fine-tune with a style pair, judge again.

Runs the ``tiny-demo`` preset end to end on the CPU and reports, on held-out content-only
prompts at fixed seeds, how often the procedural judge sees the positive control word's style
before and after, and whether prompt fidelity held.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from srpo.config import preset
from srpo.evaluate import eval_set, measure
from srpo.models import apply_checkpoint
from srpo.train import build_models, train


def run_demo(output: str | Path | None = None, prompts: int = 96, **overrides: Any) -> dict:
    """Fine-tune the tiny world with the demo preset; one flat dict of before/after numbers."""
    began = time.perf_counter()
    # The preset renders sample grids for the studio; the demo shows none, so it skips them.
    config = preset("tiny-demo", **{"sample_every": 0, **overrides})
    positive, negative = config.positive_words[0], config.negative_words[0]
    data = eval_set(config, prompts)
    generator, reward = build_models(config)
    before = measure(generator, reward, data, positive, negative, judged=True)
    with tempfile.TemporaryDirectory() as scratch:
        run = Path(output) if output else Path(scratch) / "run"
        trained_at = time.perf_counter()
        result = train(config, run)
        train_seconds = time.perf_counter() - trained_at
        apply_checkpoint(generator, result.checkpoint, config)
    after = measure(generator, reward, data, positive, negative, judged=True)
    return {
        "seconds": round(time.perf_counter() - began, 1),
        "train_seconds": round(train_seconds, 1),
        "steps": config.steps,
        "positive_word": positive,
        "negative_word": negative,
        "prompts": len(data.prompts),
        "judged_positive_rate_before": before["judged_positive_rate"],
        "judged_positive_rate_after": after["judged_positive_rate"],
        "judged_negative_rate_before": before["judged_negative_rate"],
        "judged_negative_rate_after": after["judged_negative_rate"],
        "prompt_fidelity_before": before["prompt_fidelity"],
        "prompt_fidelity_after": after["prompt_fidelity"],
        "srp_reward_before": round(before["srp_reward"], 4),
        "srp_reward_after": round(after["srp_reward"], 4),
    }
