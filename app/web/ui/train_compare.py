"""Train tab, the views people pick a checkpoint with: two sample steps side by side at the
same prompts and seeds (step 0, the base model, against step N, or one checkpoint's step
against another's), a strip of one prompt and seed across every sample step, and the
stored grid PNGs to download.

Handlers: :func:`compare_choices`, :func:`follow_choices`, :func:`compare` and :func:`strip`; the samples come from
:func:`app.core.reads.sample_cells`.
"""

from typing import Any

import gradio as gr

from app.core import jobs, reads
from app.core.errors import StudioError
from app.core.models import Role
from app.web.context import Studio
from app.web.ui.common import bind, caller, friendly, ident


def _cell_label(prompt: str, seed: int) -> str:
    return f"{prompt} · seed {seed}"


def _choices(
    studio: Studio, job_id, step_a=None, step_b=None, cell=None, newest_seen=None
) -> tuple:
    """The job's sample steps and samples as dropdown updates, and the newest step. Each
    value that is still a choice is kept (A defaults to the first step, the sample to the
    first); B follows the newest step while it is at the newest one seen (``newest_seen``)."""
    if job_id is None:
        return gr.update(choices=[]), gr.update(choices=[]), gr.update(choices=[]), None
    number = ident(job_id, "job")
    with studio.db.session() as session:
        jobs.get(session, number)
        steps = reads.sample_steps(session, number)
        cells = reads.sample_cells(session, studio.settings, number)
    labels = [_cell_label(prompt, seed) for prompt, seed in cells]

    def kept(value, options: list, default):
        found = next((o for o in options if str(o) == str(value)), None)
        return default if value is None or found is None else found

    first, newest = (steps[0], steps[-1]) if steps else (None, None)
    following = step_b in (None, "") or str(step_b) == str(newest_seen)
    return (
        gr.update(choices=steps, value=kept(step_a, steps, first)),
        gr.update(choices=steps, value=newest if following else kept(step_b, steps, newest)),
        gr.update(choices=labels, value=kept(cell, labels, labels[0] if labels else None)),
        newest,
    )


@friendly
def compare_choices(studio: Studio, job_id, request: gr.Request):
    """The chosen job's sample steps (A: the first, B: the newest), its samples and the
    newest step."""
    caller(studio, request, Role.TRAINER)
    return _choices(studio, job_id)


@friendly
def follow_choices(studio: Studio, job_id, step_a, step_b, cell, newest_seen, request: gr.Request):
    """The same, re-read while the job runs: new sample steps join the lists, B moves to a
    new step while it is at the newest one, and other choices stay as the user left them
    (an empty one takes its default)."""
    caller(studio, request, Role.TRAINER)
    return _choices(studio, job_id, step_a, step_b, cell, newest_seen)


def _step(value: Any, what: str) -> int:
    if value is None or str(value).strip() == "":
        raise StudioError(f"{what}: choose a sample step")
    return ident(value, what)


@friendly
def compare(studio: Studio, job_id, step_a, step_b, request: gr.Request):
    """Step A's and step B's samples in pairs, at the same prompt and seed (A left, B
    right), and the two steps' grid PNGs to download."""
    caller(studio, request, Role.TRAINER)
    number = ident(job_id, "job")
    a, b = _step(step_a, "step A"), _step(step_b, "step B")
    with studio.db.session() as session:
        jobs.get(session, number)
        cells = reads.sample_cells(session, studio.settings, number)
        grids = [
            reads.sample_grid(session, studio.settings, number, s) for s in dict.fromkeys((a, b))
        ]
    shown = []
    for (prompt, seed), files in cells.items():
        if a in files and b in files:
            label = _cell_label(prompt, seed)
            shown += [
                (str(files[a]), f"step {a} · {label}"),
                (str(files[b]), f"step {b} · {label}"),
            ]
    if not shown:
        raise StudioError(f"job {number} has no samples at both step {a} and step {b}")
    return shown, [str(grid) for grid in grids if grid is not None]


@friendly
def strip(studio: Studio, job_id, cell, request: gr.Request):
    """One prompt and seed at every sample step, in step order."""
    caller(studio, request, Role.TRAINER)
    number = ident(job_id, "job")
    with studio.db.session() as session:
        jobs.get(session, number)
        cells = reads.sample_cells(session, studio.settings, number)
    by_label = {_cell_label(prompt, seed): files for (prompt, seed), files in cells.items()}
    if cell not in by_label:
        raise StudioError("sample: choose a prompt and seed from the list")
    return [(str(path), f"step {step}") for step, path in sorted(by_label[cell].items())]


def build(studio: Studio, job: gr.Dropdown, timer: gr.Timer) -> None:
    """Lay out the compare views under the job view; they follow the ``job`` dropdown, and
    the job's new sample steps on each ``timer`` tick."""
    with gr.Accordion("Compare samples", open=False):
        with gr.Row():
            step_a = gr.Dropdown([], label="Step A (left)", allow_custom_value=True)
            step_b = gr.Dropdown([], label="Step B (right)", allow_custom_value=True)
            side_by_side = gr.Button("Compare A and B", scale=0)
        pairs = gr.Gallery(label="A | B at the same seeds", columns=2, height="auto")
        grids = gr.File(label="Sample grids (PNG)", file_count="multiple", interactive=False)
        with gr.Row():
            cell = gr.Dropdown([], label="Prompt and seed", allow_custom_value=True)
            along = gr.Button("Show across every step", scale=0)
        seed_strip = gr.Gallery(label="One seed across the steps", columns=8, height="auto")
    newest = gr.State(None)
    choices = [step_a, step_b, cell, newest]
    job.change(bind(compare_choices, studio), [job], choices, queue=False)
    timer.tick(bind(follow_choices, studio), [job, *choices], choices, show_progress="hidden")
    side_by_side.click(
        bind(compare, studio), [job, step_a, step_b], [pairs, grids], api_name="train_compare"
    )
    along.click(bind(strip, studio), [job, cell], [seed_strip], api_name="train_seed_strip")
