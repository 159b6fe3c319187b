"""Train tab: a config form with presets and inline validation, the queue, live job views."""

import html
import itertools
from typing import Any

import gradio as gr
import pandas as pd
import yaml
from sqlalchemy import select

from app import jobs, queue
from app.errors import BrokerUnavailable, StudioError
from app.models import RewardPreset, Role, User
from app.web import queries
from app.web.context import Studio
from app.web.ui.common import (
    Refresh,
    caller,
    friendly,
    ident,
    lines,
    read_text_upload,
    seconds,
    text,
    words,
)

QUICK = ("steps", "batch_size", "rollout_steps", "checkpoint_every", "sample_every")
METRIC_TYPES = {
    "step": "int64",
    "loss": "float64",
    "reward_mean": "float64",
    "reward_std": "float64",
}


def preset_config(name: str) -> dict[str, Any]:
    """A copy of a named preset's fields (samples rendered at every checkpoint)."""
    from srpo.config import PRESETS

    if name not in PRESETS:
        raise StudioError(f"preset: one of {', '.join(PRESETS)}")
    config = dict(PRESETS[name])
    config.setdefault("sample_every", config.get("checkpoint_every", 10))
    return config


def merged_config(advanced: str, positive: str, negative: str, prompts: str, *quick) -> dict:
    """The YAML box's fields with the quick fields written over them."""
    try:
        config = yaml.safe_load(advanced or "") or {}
    except yaml.YAMLError as error:
        raise StudioError(f"advanced config is not valid YAML: {error}") from None
    if not isinstance(config, dict):
        raise StudioError("advanced config must be a mapping of fields")
    config["positive_words"] = words(positive)
    config["negative_words"] = words(negative)
    if prompts is not None and lines(prompts):
        config["prompts"], config["prompts_file"] = lines(prompts), None
    for name, value in zip(QUICK, quick, strict=True):
        if value is not None:
            config[name] = int(value)
    return config


def validation_message(config: dict) -> str:
    """A one-line verdict, or one line per bad field (escaped, as typed)."""
    try:
        checked = jobs.validate_config(config)
    except StudioError as error:
        detail = str(error).removeprefix("invalid training config: ")
        items = "\n".join(f"- {text(part)}" for part in detail.split("; "))
        return f"**Fix before queueing:**\n\n{items}"
    from srpo.config import make_config
    from srpo.explain import explain, explain_markdown

    # Parameters are counted only for the shipped weights: reading a user-given model_path
    # here would tell the caller whether that path exists.
    plan = explain(make_config(checked), count=checked["model_path"] is None)
    summary = explain_markdown(plan, escape=text)
    return (
        f"✓ Valid: {text(checked['method'])} on {text(checked['model'])}, "
        f"{checked['steps']} steps, {len(checked['prompts'] or [])} prompts.\n\n{summary}"
    )


def job_table(studio: Studio) -> pd.DataFrame:
    """The job list as the UI shows it."""
    with studio.db.session() as session:
        rows = queries.job_rows(session, 50)
    return pd.DataFrame(
        [
            {
                "id": r["id"],
                "name": r["name"],
                "state": r["state"],
                "queue": r["queue_position"] or "",
                "progress": f"{100 * r['progress']:.0f}%",
                "step": f"{r['step']}/{r['total_steps']}",
                "ETA": seconds(r["eta_seconds"]) if r["state"] == "running" else "",
                "reward": round(r["reward_mean"], 4) if r["reward_mean"] is not None else "",
                "loss": round(r["loss"], 4) if r["loss"] is not None else "",
            }
            for r in rows
        ],
        columns=["id", "name", "state", "queue", "progress", "step", "ETA", "reward", "loss"],
    )


def progress_html(row: dict[str, Any]) -> str:
    """A progress bar with state, step and ETA."""
    percent = 100 * row["progress"]
    where = f"queue position {row['queue_position']}" if row["queue_position"] else row["state"]
    eta = f" · ETA {seconds(row['eta_seconds'])}" if row["state"] == "running" else ""
    error = row["error"] or row["dispatch_error"]
    note = f'<p class="job-error">{html.escape(error)}</p>' if error else ""
    return (
        f'<div class="job-progress" data-state="{html.escape(row["state"])}">'
        f"<strong>Job {row['id']}: {html.escape(row['name'])}</strong> · {html.escape(where)} · "
        f"step {row['step']}/{row['total_steps']}{eta}"
        f'<progress max="100" value="{percent:.0f}">{percent:.0f}%</progress>{note}</div>'
    )


def build(studio: Studio) -> Refresh:
    """Add the Train tab's components and events to the current Blocks."""
    from srpo.config import PRESETS

    first = preset_config("tiny-demo")
    with gr.Row():
        with gr.Column(scale=1):
            preset = gr.Dropdown(list(PRESETS), value="tiny-demo", label="Preset")
            name = gr.Textbox(label="Job name", value="tiny demo", max_length=200)
            reward_preset = gr.Dropdown(
                [], label="Reward preset (from the Reward Lab)", allow_custom_value=True
            )
            with gr.Row():
                positive = gr.Textbox(
                    label="Positive words", value=", ".join(first["positive_words"])
                )
                negative = gr.Textbox(
                    label="Negative words", value=", ".join(first["negative_words"])
                )
            prompts = gr.Textbox(
                label="Prompts (one per line)", lines=4, value="\n".join(first["prompts"])
            )
            prompt_file = gr.File(
                label="…or a prompt file (.txt, UTF-8)", type="filepath", height=90
            )
            with gr.Row():
                quick = [
                    gr.Number(first.get(field), label=field.replace("_", " "), precision=0)
                    for field in QUICK
                ]
            with gr.Accordion("Advanced config (YAML)", open=False):
                advanced = gr.Code(yaml.safe_dump(first, sort_keys=False), language="yaml")
            verdict = gr.Markdown(elem_classes=["status", "validation"])
            submit = gr.Button("Queue job", variant="primary")
            submit_status = gr.Markdown(elem_classes=["status"])
        with gr.Column(scale=2):
            table = gr.Dataframe(job_table(studio), label="Jobs", interactive=False, wrap=True)
            with gr.Row():
                job = gr.Dropdown([], label="Job", allow_custom_value=True)
                cancel = gr.Button("Cancel job", variant="stop")
            progress = gr.HTML()
            with gr.Row():
                reward_plot = gr.LinePlot(x="step", y="reward", label="Reward (mean)", height=220)
                loss_plot = gr.LinePlot(x="step", y="loss", label="Loss", height=220)
            step = gr.Slider(0, 1, value=0, step=1, label="Sample step (0 = base model)")
            grid = gr.Gallery(label="Fixed-seed samples", columns=4, height="auto")
            log_box = gr.Textbox(label="Job log", lines=10, max_lines=20, autoscroll=True)
    timer = gr.Timer(2.0)
    seen = gr.State(None)
    form = [advanced, positive, negative, prompts, *quick]

    @friendly
    def apply_preset(chosen, request: gr.Request):
        caller(studio, request, Role.TRAINER)
        config = preset_config(chosen)
        return (
            yaml.safe_dump(config, sort_keys=False),
            ", ".join(config.get("positive_words", [])),
            ", ".join(config.get("negative_words", [])),
            "\n".join(config.get("prompts") or []),
            *[config.get(field) for field in QUICK],
        )

    preset.change(apply_preset, [preset], form, api_name="train_preset")

    @friendly
    def use_reward_preset(chosen, request: gr.Request):
        caller(studio, request, Role.TRAINER)
        with studio.db.session() as session:
            row = session.scalar(select(RewardPreset).where(RewardPreset.name == chosen))
            if row is None:
                raise StudioError("choose a saved reward preset")
            return ", ".join(row.positive_words), ", ".join(row.negative_words)

    reward_preset.change(use_reward_preset, [reward_preset], [positive, negative])

    @friendly
    def load_prompt_file(path, request: gr.Request):
        caller(studio, request, Role.TRAINER)
        return "\n".join(read_text_upload(path))

    prompt_file.upload(load_prompt_file, [prompt_file], [prompts], api_name="train_prompt_file")

    def validate(
        advanced, pos, neg, prompt_lines, steps, batch, rollout, every, sample, request: gr.Request
    ):
        caller(studio, request, Role.TRAINER)
        values = (advanced, pos, neg, prompt_lines, steps, batch, rollout, every, sample)
        try:
            return validation_message(merged_config(*values))
        except StudioError as error:
            return f"**Fix before queueing:** {text(error)}"

    for field in form:
        field.change(validate, form, [verdict], show_progress="hidden", queue=False)

    @friendly
    def run_submit(
        job_name,
        advanced,
        pos,
        neg,
        prompt_lines,
        steps,
        batch,
        rollout,
        every,
        sample,
        request: gr.Request,
    ):
        who = caller(studio, request, Role.TRAINER)
        values = (advanced, pos, neg, prompt_lines, steps, batch, rollout, every, sample)
        config = merged_config(*values)

        def store(session) -> int:
            owner = session.get(User, who.id)
            return jobs.submit(session, studio.settings, config, owner, job_name).id

        job_id = studio.db.write(store)
        try:
            queue.dispatch(studio.db, studio.settings, job_id)
            message = f"Queued job {job_id}."
        except BrokerUnavailable as error:
            message = f"⚠ {text(error)}"
        return message, job_table(studio), gr.update(choices=_job_ids(studio), value=job_id)

    submit.click(run_submit, [name, *form], [submit_status, table, job], api_name="train_submit")

    def samples(session, job_id: int, at: int) -> list[tuple[str, str]]:
        return [
            (str(path), label)
            for path, label in queries.samples_at(session, studio.settings, job_id, at)
        ]

    def job_view(job_id, known: list[int] | None) -> tuple:
        """The job's progress, plots, slider and log; when its sample steps changed since
        ``known``, the slider moves to the newest step and the grid shows its samples."""
        if job_id is None:
            return "", None, None, gr.update(), "", [], None
        number = ident(job_id, "job")
        with studio.db.session() as session:
            row = queries.job_row(session, jobs.get(session, number))
            points = queries.metrics(session, number)
            steps = queries.sample_steps(session, number)
            log = queries.job_log(session, studio.settings, number)
            fresh = steps != known
            newest = samples(session, number, steps[-1]) if fresh and steps else []
        frame = pd.DataFrame(points or [], columns=list(METRIC_TYPES)).astype(METRIC_TYPES)
        rewards = frame.rename(columns={"reward_mean": "reward"})[["step", "reward"]]
        slider = gr.update(minimum=0, maximum=max([*steps, 1]), step=_spacing(steps))
        if fresh:
            slider["value"] = steps[-1] if steps else 0
        shown = newest if fresh else gr.update()
        return progress_html(row), rewards, frame[["step", "loss"]], slider, log, shown, steps

    @friendly
    def show_job(job_id, request: gr.Request):
        caller(studio, request, Role.TRAINER)
        return job_view(job_id, None)

    job_outputs = [progress, reward_plot, loss_plot, step, log_box, grid, seen]
    job.change(show_job, [job], job_outputs, api_name="train_job")

    @friendly
    def show_samples(job_id, at, request: gr.Request):
        caller(studio, request, Role.TRAINER)
        if job_id is None:
            return []
        with studio.db.session() as session:
            steps = queries.sample_steps(session, ident(job_id, "job"))
            if not steps:
                return []
            nearest = min(steps, key=lambda s: abs(s - int(at or 0)))
            return samples(session, ident(job_id, "job"), nearest)

    step.release(show_samples, [job, step], [grid], api_name="train_samples")

    @friendly
    def run_cancel(job_id, request: gr.Request):
        caller(studio, request, Role.TRAINER)
        if job_id is None:
            raise StudioError("choose a job to cancel")
        with studio.db.session() as session:
            jobs.cancel(session, ident(job_id, "job"))
        return job_table(studio)

    cancel.click(run_cancel, [job], [table], api_name="train_cancel")

    def tick(job_id, known, request: gr.Request):
        caller(studio, request, Role.TRAINER)
        return (job_table(studio), *job_view(job_id, known))

    timer.tick(tick, [job, seen], [table, *job_outputs], show_progress="hidden")

    def refresh(request: gr.Request):
        caller(studio, request, Role.TRAINER)
        from app.web.ui.lab import preset_names

        return (
            gr.update(choices=preset_names(studio)),
            gr.update(choices=_job_ids(studio)),
            validate(*defaults, request),
        )

    defaults = [
        yaml.safe_dump(first, sort_keys=False),
        ", ".join(first["positive_words"]),
        ", ".join(first["negative_words"]),
        "\n".join(first["prompts"]),
        *[first.get(field) for field in QUICK],
    ]
    return refresh, [reward_preset, job, verdict]


def _job_ids(studio: Studio) -> list[tuple[str, int]]:
    with studio.db.session() as session:
        return [(f"{r['id']}: {r['name']}", r["id"]) for r in queries.job_rows(session, 50)]


def _spacing(steps: list[int]) -> int:
    gaps = [b - a for a, b in itertools.pairwise(steps)]
    return min(gaps) if gaps else 1
