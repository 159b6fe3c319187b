"""Train tab: a config form with presets and inline validation, the queue, live job views.

The form is a preset plus overrides: the YAML box and the quick fields are written over the
chosen preset by the core's one submission path (:mod:`app.core.submission`), the same as
``POST /api/v1/jobs``. The backend, reward and launch fields write into the YAML box
(:mod:`app.web.ui.train_setup`). Handlers: :func:`apply_preset`, :func:`use_reward_preset`,
:func:`load_prompt_file`, :func:`validate`, :func:`submit`, :func:`show_job`,
:func:`show_samples`, :func:`cancel`, :func:`tick` and :func:`refresh`.
"""

import html
import itertools
from typing import Any

import gradio as gr
import pandas as pd
import yaml
from sqlalchemy import select

from app.core import access, admission, jobs, reads, submission
from app.core.errors import BrokerUnavailable, StudioError
from app.core.models import RewardPreset, Role
from app.web.auth import Principal
from app.web.context import Studio
from app.web.ui import train_compare, train_monitor, train_setup
from app.web.ui.common import (
    Refresh,
    bind,
    caller,
    friendly,
    ident,
    lines,
    read_text_upload,
    seconds,
    text,
    words,
)
from app.web.ui.train_setup import advanced_fields, preset_config

DEFAULT_PRESET = "tiny-demo"
QUICK = ("steps", "batch_size", "rollout_steps", "checkpoint_every", "sample_every")
METRIC_TYPES = {
    "step": "int64",
    "loss": "float64",
    "reward_mean": "float64",
    "reward_std": "float64",
}


def merged_config(advanced: str, positive: str, negative: str, prompts: str, *quick) -> dict:
    """The form's overrides: the YAML box's fields with the quick fields written over them."""
    config = advanced_fields(advanced)
    config["positive_words"] = words(positive)
    config["negative_words"] = words(negative)
    if prompts is not None and lines(prompts):
        config["prompts"], config["prompts_file"] = lines(prompts), None
    for name, value in zip(QUICK, quick, strict=True):
        if value is not None:
            try:
                config[name] = int(value)
            except (OverflowError, ValueError):
                raise StudioError(f"{name}: a whole number") from None
    admission.check_values(config)
    return config


def form_values(config: dict[str, Any]) -> tuple:
    """What the form's fields show for a config: YAML box, words, prompts, quick fields."""
    return (
        yaml.safe_dump(config, sort_keys=False),
        ", ".join(config.get("positive_words", [])),
        ", ".join(config.get("negative_words", [])),
        "\n".join(config.get("prompts") or []),
        *[config.get(field) for field in QUICK],
    )


def nodes_text(row: dict[str, Any]) -> str:
    """Where a job runs: its launcher, workers and, once they started, each rank's host."""
    where = f"{row['launcher']} launcher, {row['num_workers']} worker(s)"
    ranks = sorted(row.get("nodes") or [], key=lambda r: r["rank"])
    if ranks:
        hosts = ", ".join(f"rank {r['rank']} on {r['host']} ({r['ip']})" for r in ranks)
        where += f": {hosts}"
    return where


def validation_message(config: dict, preset: str | None = None) -> str:
    """A verdict on ``preset`` with ``config`` over it (or ``config`` alone): what the run
    will do, or one line per bad field (escaped, as typed)."""
    try:
        checked = submission.job_config(config, preset)
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
        rows = reads.job_rows(session, 50)
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
        f'<p class="job-nodes">{html.escape(nodes_text(row))}</p>'
        f'<progress max="100" value="{percent:.0f}">{percent:.0f}%</progress>{note}</div>'
    )


def job_ids(studio: Studio) -> list[tuple[str, int]]:
    """The newest jobs as dropdown choices."""
    with studio.db.session() as session:
        return [(f"{r['id']}: {r['name']}", r["id"]) for r in reads.job_rows(session, 50)]


def _spacing(steps: list[int]) -> int:
    gaps = [b - a for a, b in itertools.pairwise(steps)]
    return min(gaps) if gaps else 1


def _samples(studio: Studio, session, job_id: int, at: int) -> list[tuple[str, str]]:
    return [
        (str(path), label) for path, label in reads.samples_at(session, studio.settings, job_id, at)
    ]


def job_view(
    studio: Studio, who: Principal, job_id, known: list[int] | None, at: float | None = None
) -> tuple:
    """The job's progress, plots, slider and log; when its sample steps changed since
    ``known``, the slider moves to the newest step and the grid shows its samples, but only
    while the slider (at ``at``) is at the newest known step: someone looking at an older
    step is left there.

    Admins see the full log; others its lines without tracebacks or the server's folders,
    then the job's state and error message (:func:`app.core.access.job_log_for`)."""
    if job_id is None:
        return "", None, None, gr.update(), "", [], None
    number = ident(job_id, "job")
    with studio.db.session() as session:
        job = jobs.get(session, number)
        row = reads.job_row(session, job)
        points = reads.metrics(session, number)
        steps = reads.sample_steps(session, number)
        if who.role != Role.ADMIN:
            row["error"] = access.public_error(studio.settings, row["error"])
        log = access.job_log_for(session, studio.settings, job, who.role)
        following = not known or at is None or at >= known[-1]
        fresh = steps != known and following
        newest = _samples(studio, session, number, steps[-1]) if fresh and steps else []
    frame = pd.DataFrame(points or [], columns=list(METRIC_TYPES)).astype(METRIC_TYPES)
    rewards = frame.rename(columns={"reward_mean": "reward"})[["step", "reward"]]
    slider = gr.update(minimum=0, maximum=max([*steps, 1]), step=_spacing(steps))
    if fresh:
        slider["value"] = steps[-1] if steps else 0
    shown = newest if fresh else gr.update()
    seen = steps if fresh else known
    return progress_html(row), rewards, frame[["step", "loss"]], slider, log, shown, seen


@friendly
def apply_preset(studio: Studio, chosen, request: gr.Request):
    """Fill the form with a preset's fields."""
    caller(studio, request, Role.TRAINER)
    return form_values(preset_config(chosen))


@friendly
def use_reward_preset(studio: Studio, chosen, advanced, request: gr.Request):
    """The control words of a reward preset saved in the Reward Lab, and its k written into
    the YAML box as the denoise branch's discount at both ends of the window: the Lab
    previews one k, so training uses that k (the inversion branch keeps its own)."""
    caller(studio, request, Role.TRAINER)
    with studio.db.session() as session:
        row = session.scalar(select(RewardPreset).where(RewardPreset.name == chosen))
        if row is None:
            raise StudioError("choose a saved reward preset")
        name, k = row.name, float(row.k)
        positive, negative = ", ".join(row.positive_words), ", ".join(row.negative_words)
    config = advanced_fields(advanced)
    direct = config.setdefault("direct_align", {})
    if not isinstance(direct, dict):
        raise StudioError("advanced config: direct_align must be a mapping of fields")
    direct["discount_denoise"] = {"low": k, "high": k}
    note = (
        f"Reward preset “{text(name)}”: its words, and its k = {k:g} as the denoise "
        "branch's discount across the window (direct_align.discount_denoise in the "
        "advanced config; edit it there for a schedule). The inversion branch keeps its own."
    )
    return positive, negative, yaml.safe_dump(config, sort_keys=False), note


@friendly
def load_prompt_file(studio: Studio, path, request: gr.Request):
    """Prompts from an uploaded text file, one per line."""
    caller(studio, request, Role.TRAINER)
    return "\n".join(read_text_upload(path))


def validate(
    studio: Studio,
    preset,
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
    """The form's inline verdict (never an error notice: it runs on every keystroke)."""
    caller(studio, request, Role.TRAINER)
    values = (advanced, pos, neg, prompt_lines, steps, batch, rollout, every, sample)
    try:
        return validation_message(merged_config(*values), preset)
    except StudioError as error:
        return f"**Fix before queueing:** {text(error)}"


@friendly
def submit(
    studio: Studio,
    preset,
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
    """Queue the form's job: ``preset`` with the form's fields merged over it."""
    who = caller(studio, request, Role.TRAINER)
    values = (advanced, pos, neg, prompt_lines, steps, batch, rollout, every, sample)
    overrides = merged_config(*values)
    try:
        job_id = submission.submit_job(
            studio.db, studio.settings, overrides, preset=preset, owner_id=who.id, name=job_name
        )
        message = f"Queued job {job_id}."
    except BrokerUnavailable as error:
        job_id = error.job_id
        message = f"⚠ {text(error)}"
    return message, job_table(studio), gr.update(choices=job_ids(studio), value=job_id)


@friendly
def show_job(studio: Studio, job_id, request: gr.Request):
    """The chosen job's progress, plots, samples and log."""
    who = caller(studio, request, Role.TRAINER)
    return job_view(studio, who, job_id, None)


@friendly
def show_samples(studio: Studio, job_id, at, request: gr.Request):
    """The job's samples at the sample step nearest ``at``."""
    caller(studio, request, Role.TRAINER)
    if job_id is None:
        return []
    with studio.db.session() as session:
        steps = reads.sample_steps(session, ident(job_id, "job"))
        if not steps:
            return []
        nearest = min(steps, key=lambda s: abs(s - int(at or 0)))
        return _samples(studio, session, ident(job_id, "job"), nearest)


@friendly
def cancel(studio: Studio, job_id, request: gr.Request):
    """Cancel a queued job, or ask a running one to checkpoint and stop."""
    who = caller(studio, request, Role.TRAINER)
    if job_id is None:
        raise StudioError("choose a job to cancel")
    with studio.db.session() as session:
        access.managed_job(session, studio.settings, ident(job_id, "job"), who.id, who.role)
        jobs.cancel(session, ident(job_id, "job"))
    return job_table(studio)


def tick(studio: Studio, job_id, known, at, request: gr.Request):
    """The timer's update: the job list and the chosen job's view (the slider at ``at``)."""
    who = caller(studio, request, Role.TRAINER)
    return (job_table(studio), *job_view(studio, who, job_id, known, at))


@friendly
def ask_cancel(studio: Studio, job_id, request: gr.Request):
    """Show the cancel confirmation for the chosen job."""
    caller(studio, request, Role.TRAINER)
    if job_id is None:
        raise StudioError("choose a job to cancel")
    question = (
        f"Cancel job {ident(job_id, 'job')}? A running job saves a checkpoint and stops; "
        "this cannot be undone."
    )
    return gr.update(visible=True), question


def refresh(studio: Studio, request: gr.Request):
    """On page load: reward presets, job choices and the default form's verdict."""
    from app.web.ui.lab import preset_names

    caller(studio, request, Role.TRAINER)
    return (
        gr.update(choices=preset_names(studio)),
        gr.update(choices=job_ids(studio)),
        validate(studio, DEFAULT_PRESET, *form_values(preset_config(DEFAULT_PRESET)), request),
    )


def build(studio: Studio) -> Refresh:
    """Lay out the Train tab and wire its events to the handlers above."""
    from srpo.config import PRESETS

    first = preset_config(DEFAULT_PRESET)
    with gr.Row():
        with gr.Column(scale=1):
            preset = gr.Dropdown(list(PRESETS), value=DEFAULT_PRESET, label="Preset")
            name = gr.Textbox(label="Job name", value="tiny demo", max_length=200)
            model_fields = train_setup.model_fields(first)
            reward_preset = gr.Dropdown(
                [], label="Reward preset (from the Reward Lab)", allow_custom_value=True
            )
            reward_preset_note = gr.Markdown(elem_classes=["status"])
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
            launch = train_setup.launch_fields(first)
            with gr.Accordion("Advanced config (YAML)", open=False):
                advanced = gr.Code(yaml.safe_dump(first, sort_keys=False), language="yaml")
            verdict = gr.Markdown(elem_classes=["status", "validation"])
            submit_button = gr.Button("Queue job", variant="primary")
            submit_status = gr.Markdown(elem_classes=["status"])
        with gr.Column(scale=2):
            table = gr.Dataframe(job_table(studio), label="Jobs", interactive=False, wrap=True)
            with gr.Row():
                job = gr.Dropdown([], label="Job", allow_custom_value=True)
                cancel_button = gr.Button("Cancel job", variant="stop")
            with gr.Row(visible=False) as confirm_row:
                confirm_text = gr.Markdown()
                confirm_yes = gr.Button("Yes, cancel the job", variant="stop", scale=0)
                confirm_no = gr.Button("Keep it running", scale=0)
            progress = gr.HTML()
            with gr.Row():
                reward_plot = gr.LinePlot(x="step", y="reward", label="Reward (mean)", height=220)
                loss_plot = gr.LinePlot(x="step", y="loss", label="Loss", height=220)
            hacking = train_monitor.build()
            step = gr.Slider(0, 1, value=0, step=1, label="Sample step (0 = base model)")
            grid = gr.Gallery(label="Fixed-seed samples", columns=4, height="auto")
            timer = gr.Timer(2.0)  # re-reads the jobs, the chosen job and its compare lists
            train_compare.build(studio, job, timer)
            log_box = gr.Textbox(label="Job log", lines=10, max_lines=20, autoscroll=True)
    seen = gr.State(None)
    form = [advanced, positive, negative, prompts, *quick]
    job_outputs = [progress, reward_plot, loss_plot, step, log_box, grid, seen]

    preset.change(bind(apply_preset, studio), [preset], form, api_name="train_preset")
    train_setup.wire(studio, preset, advanced, launch, model_fields)
    reward_preset.change(
        bind(use_reward_preset, studio),
        [reward_preset, advanced],
        [positive, negative, advanced, reward_preset_note],
        api_name="train_reward_preset",
    )
    prompt_file.upload(
        bind(load_prompt_file, studio), [prompt_file], [prompts], api_name="train_prompt_file"
    )
    for field in form:
        field.change(
            bind(validate, studio),
            [preset, *form],
            [verdict],
            show_progress="hidden",
            queue=False,
        )
    submit_button.click(
        bind(submit, studio),
        [preset, name, *form],
        [submit_status, table, job],
        api_name="train_submit",
    )
    job.change(bind(show_job, studio), [job], job_outputs, api_name="train_job")
    step.release(bind(show_samples, studio), [job, step], [grid], api_name="train_samples")
    # cancelling asks first: the button opens a confirmation row
    cancel_button.click(bind(ask_cancel, studio), [job], [confirm_row, confirm_text])
    confirm_yes.click(bind(cancel, studio), [job], [table], api_name="train_cancel").then(
        lambda: gr.update(visible=False), None, [confirm_row]
    )
    confirm_no.click(lambda: gr.update(visible=False), None, [confirm_row])
    timer.tick(bind(tick, studio), [job, seen, step], [table, *job_outputs], show_progress="hidden")
    train_monitor.wire(studio, hacking, job, timer)
    return bind(refresh, studio), [reward_preset, job, verdict]
