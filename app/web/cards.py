"""Model cards (Markdown) and diffusers loading snippets for checkpoints: what the Checkpoints
tab and ``GET /api/v1/checkpoints/{id}/model-card`` show. Evaluations are stored by
:mod:`app.core.evaluations`."""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

import yaml

from app.core.downloads import download_name
from app.core.models import Checkpoint


def diffusers_snippet(found: Checkpoint, config: dict[str, Any]) -> str:
    """Python that loads the checkpoint's download (:func:`download_name`, in the working
    folder) with diffusers, through the backend's own pipeline and transformer classes."""
    tiny = config.get("model", "tiny") == "tiny"
    if not tiny:
        from srpo.models.loader import diffusers_classes

        classes = diffusers_classes(config["model"], config.get("model_path"))
        pipeline, base = classes["pipeline"], classes["model"]
    if tiny:
        load = (
            "from srpo.models import load_generator\n\n"
            "# the tiny world ships its base generator with srpo\n"
            'generator = load_generator("tiny")\n'
            "transformer = generator.transformer\n"
        )
    else:
        load = (
            f"import torch\nfrom diffusers import {pipeline}\n\n"
            f'pipe = {pipeline}.from_pretrained("{base}", torch_dtype=torch.bfloat16)\n'
            "transformer = pipe.transformer\n"
        )
    if found.format == "lora":
        weights = download_name(found)
        lora = _lora_settings(config)
        if tiny:
            apply = (
                "from peft import LoraConfig, set_peft_model_state_dict\n"
                "from safetensors.torch import load_file\n\n"
                f"transformer.add_adapter(LoraConfig(r={lora['rank']!r}, "
                f"lora_alpha={lora['alpha']!r}, "
                f"target_modules={json.dumps(list(lora['target_modules']))}))\n"
                f'state = load_file("{weights}")\n'
                "set_peft_model_state_dict(transformer, "
                '{k.removeprefix("transformer."): v for k, v in state.items()})\n'
            )
        else:
            apply = (
                f"# the file stores its LoRA config (rank {lora['rank']!r}, alpha "
                f"{lora['alpha']!r}), so it loads at the trained strength\n"
                f'pipe.load_lora_weights(".", weight_name="{weights}")\n'
            )
    else:
        transformer = "FluxTransformer2DModel" if tiny else classes["transformer"]
        bundle = download_name(found)
        folder = bundle.removesuffix(".zip")
        model_folder = str(PurePosixPath(folder) / PurePosixPath(found.weights_file).parent)
        apply = (
            f"import zipfile\n\nfrom diffusers import {transformer}\n\n"
            "# the download is a zip of the model folder (config.json and the weights)\n"
            f'zipfile.ZipFile("{bundle}").extractall("{folder}")\n'
            f'transformer = {transformer}.from_pretrained("{model_folder}")\n'
        )
        if tiny:
            apply += "generator.transformer = transformer\n"
        else:
            apply += "pipe.transformer = transformer\n"
    return load + apply


def _lora_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The run's LoRA rank, alpha and target modules (srpo's defaults where the config has none)."""
    from srpo.config import LoRA

    return {**LoRA().model_dump(mode="json"), **(config.get("lora") or {})}


def model_card(
    found: Checkpoint,
    config: dict[str, Any],
    evaluation: dict[str, Any] | None,
    arena: list[dict[str, Any]],
    hacking: dict[str, Any] | None,
) -> str:
    """A Markdown model card: config, reward, control words, seeds, code version, results, and
    the hacking monitor at the checkpoint (``hacking``: :func:`app.core.monitoring.
    checkpoint_report`)."""
    from srpo import __version__

    lines = [
        f"# SRPO fine-tune: job {found.job_id}, step {found.step}",
        "",
        f"- method: `{config.get('method')}` on base model `{config.get('model')}`"
        + (f" (`{config['model_path']}`)" if config.get("model_path") else ""),
        f"- reward: `{config.get('reward')}`",
        f"- control words: positive {config.get('positive_words')}, "
        f"negative {config.get('negative_words')}",
        f"- seed: {config.get('seed')}; evaluation seeds: {config.get('eval_seeds')}",
        f"- format: {found.format}; weights `{found.weights_file}` ({found.size_bytes:,} bytes "
        "in the folder)",
        f"- sha256 of the weights: `{found.sha256}`",
        f"- code version: srpo {__version__}",
        "",
        "## Evaluation",
        "",
    ]
    if evaluation is None:
        lines.append("Not evaluated yet (Checkpoints tab: Evaluate).")
    else:
        lines += ["| metric | base | fine-tuned |", "|---|---|---|"]
        for key, value in evaluation["finetuned"].items():
            base = evaluation["base"].get(key)
            lines.append(f"| {key} | {_number(base)} | {_number(value)} |")
    lines += ["", "## Hacking monitor", "", *_hacking_lines(hacking)]
    lines += ["", "## Arena", ""]
    if not arena:
        lines.append("Not in any campaign with votes yet.")
    for entry in arena:
        lines.append(
            f"- campaign {entry['campaign']!r} ({entry['criterion']}): win rate "
            f"{_number(entry['rate'])} [{_number(entry['low'])}, {_number(entry['high'])}] "
            f"over {entry['n']} votes"
        )
    lines += ["", "## Training config", "", "```yaml", yaml.safe_dump(config, sort_keys=False)]
    lines += ["```", ""]
    return "\n".join(lines)


def _hacking_lines(report: dict[str, Any] | None) -> list[str]:
    """The card's account of the gold signal and drifts at the checkpoint, and the warning."""
    at = (report or {}).get("at_checkpoint")
    if at is None:
        return ["No sample step was measured by this checkpoint's step."]
    lines = [
        f"Gold signal `{report['gold_signal']}`, measured at step {at['measured_at']} (the "
        "newest sample step by this checkpoint's), as changes from the first sample step:",
        "",
        "| signal | value | change | material above |",
        "|---|---|---|---|",
        f"| training reward | {_number(at['train_reward'])} | | |",
        f"| gold | {_number(at['gold'])} | {_number(at['gold_change'])} | |",
    ]
    for name, change in at["drift"].items():
        value = at["metrics"].get(name)
        limit = report["thresholds"].get(name)
        lines.append(f"| {name} | {_number(value)} | {_number(change)} | {_number(limit)} |")
    fired = report["warning"]
    lines.append("")
    if fired is None:
        lines.append("No hacking warning for this job.")
    else:
        lines.append(f"**Warning:** {fired['message']}")
        if report["after_warning"]:
            lines.append(
                f"This checkpoint comes after step {fired['last_good_step']}, where the "
                "hacking began."
            )
    return lines


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
