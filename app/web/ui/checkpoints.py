"""Checkpoints tab: steps, rewards, hack drift, judged metrics, downloads, model cards, loading snippets.

Handlers: :func:`show`, :func:`evaluate` and :func:`refresh`. The rows are the core's
(:mod:`app.core.reads`), evaluations are stored by :mod:`app.core.evaluations`, the card and
snippet are :mod:`app.web.cards`.
"""

import html

import gradio as gr
import pandas as pd

from app.core import arena_results, downloads, monitoring, reads
from app.core.errors import StudioError
from app.core.evaluations import load_evaluation, save_evaluation
from app.core.models import Job, Role
from app.core.storage import resolve
from app.web import cards
from app.web.context import Studio
from app.web.ui import checkpoint_compare
from app.web.ui.common import Refresh, bind, caller, every_so_often, friendly, ident

EVAL_PROMPTS = 16
JUDGED = ("prompt_fidelity", "judged_positive_rate", "judged_negative_rate")


def _rounded(value: float | None) -> float | str:
    return "" if value is None else round(value, 4)


def checkpoint_table(studio: Studio) -> pd.DataFrame:
    """Every checkpoint with its training reward, the hacking monitor's gold change and hack
    drift from the first sample step (at the newest sample step by the checkpoint's), and,
    once evaluated, judged metrics."""
    with studio.db.session() as session:
        rows = reads.checkpoint_rows(session)
        arena = {r["id"]: arena_results.checkpoint_arena(session, r["id"]) for r in rows}
        sizes = {
            r["id"]: downloads.download_size(studio.settings, reads.checkpoint(session, r["id"]))
            for r in rows
        }
    table = []
    for r in rows:
        evaluation = load_evaluation(studio.settings, r["id"]) or {}
        tuned = evaluation.get("finetuned", {})
        watched = r["monitor"] or {}
        wins = "; ".join(
            f"{a['criterion']} {a['rate']:.0%} ({a['n']})" for a in arena[r["id"]] if a["n"]
        )
        table.append(
            {
                "id": r["id"],
                "job": f"{r['job_id']}: {r['job_name']}",
                "step": r["step"],
                "format": r["format"],
                "download MB": round(sizes[r["id"]] / 2**20, 2),
                "train reward": round(r["train_reward"], 4) if r["train_reward"] else "",
                "gold Δ": _rounded(watched.get("gold_change")),
                "hack drift": _rounded(watched.get("hack_drift")),
                "eval reward": round(tuned["reward"], 4) if "reward" in tuned else "",
                **{k.replace("_", " "): round(tuned[k], 3) if k in tuned else "" for k in JUDGED},
                "arena": wins,
                "sha256": r["sha256"][:16] + "…",
            }
        )
    return pd.DataFrame(table)


@friendly
def show(studio: Studio, checkpoint_id, request: gr.Request):
    """A checkpoint's sha256, download links, model card and diffusers snippet."""
    caller(studio, request, Role.TRAINER)
    if checkpoint_id is None:
        return "", "", "", ""
    with studio.db.session() as session:
        found = reads.checkpoint(session, ident(checkpoint_id, "checkpoint"))
        config = session.get(Job, found.job_id).config
        arena = arena_results.checkpoint_arena(session, found.id)
        hacking = monitoring.checkpoint_report(session, found)
    evaluation = load_evaluation(studio.settings, found.id)
    size = downloads.download_size(studio.settings, found) / 2**20
    what = "Download model folder as zip (" if downloads.bundled(found) else "Download weights ("
    link = (
        f'<div class="downloads"><a class="download" href="/api/v1/checkpoints/{found.id}/'
        f'download" download>{what}{html.escape(downloads.download_name(found))}, '
        f"{size:.2f} MB)</a> "
        f'<a class="download" href="/api/v1/checkpoints/{found.id}/model-card" download='
        f'"model-card-{found.id}.md">Download model card</a></div>'
    )
    return (
        found.sha256,
        link,
        cards.model_card(found, config, evaluation, arena, hacking),
        cards.diffusers_snippet(found, config),
    )


@friendly
def evaluate(
    studio: Studio,
    checkpoint_id,
    request: gr.Request,
    progress=gr.Progress(),  # noqa: B008 (Gradio's marker for a progress parameter)
):
    """Evaluate a checkpoint against its base on held-out prompts, store the result and show
    the model card with it. The progress bar follows both models' denoising steps."""
    from srpo.evaluate import evaluate_checkpoint

    caller(studio, request, Role.TRAINER)
    if checkpoint_id is None:
        raise StudioError("choose a checkpoint")
    with studio.db.session() as session:
        found = reads.checkpoint(session, ident(checkpoint_id, "checkpoint"))
        folder = resolve(studio.settings.storage, found.path)
    progress(0, desc="Loading the base model and the checkpoint")

    @every_so_often
    def sampled(done: int, total: int) -> None:
        half = "base model" if done <= total // 2 else "checkpoint"
        progress((done, total), desc=f"Sampling ({half})", unit="steps")

    with studio.models.lock:
        result = evaluate_checkpoint(folder, prompts=EVAL_PROMPTS, on_step=sampled)
    save_evaluation(studio.settings, ident(checkpoint_id, "checkpoint"), result)
    # the model card shows the new evaluation at once
    card = show(studio, checkpoint_id, request)[2]
    return f"Evaluated on {EVAL_PROMPTS} held-out prompts.", checkpoint_table(studio), card


def refresh(studio: Studio, request: gr.Request):
    """The tab's lists, re-read: the checkpoint table and choices, the compare view's models."""
    caller(studio, request, Role.TRAINER)
    with studio.db.session() as session:
        rows = reads.checkpoint_rows(session)
    choices = [(f"{r['id']}: job {r['job_id']} step {r['step']}", r["id"]) for r in rows]
    return checkpoint_table(studio), gr.update(choices=choices), *checkpoint_compare.choices(studio)


def build(studio: Studio) -> Refresh:
    """Lay out the Checkpoints tab and wire its events to the handlers above."""
    table = gr.Dataframe(label="Checkpoints", interactive=False, wrap=True)
    with gr.Row():
        chosen = gr.Dropdown([], label="Checkpoint", allow_custom_value=True)
        evaluate_button = gr.Button("Evaluate (judged, tiny world)")
    sha = gr.Textbox(label="sha256 of the weights", interactive=False, buttons=["copy"])
    download = gr.HTML()
    with gr.Row():
        card = gr.Code(label="Model card (Markdown)", language="markdown", interactive=False)
        snippet = gr.Code(label="Load it in diffusers", language="python", interactive=False)
    status = gr.Markdown(elem_classes=["status"])
    compared = checkpoint_compare.build(studio)

    chosen.change(
        bind(show, studio), [chosen], [sha, download, card, snippet], api_name="checkpoint_show"
    )
    evaluate_button.click(
        bind(evaluate, studio), [chosen], [status, table, card], api_name="checkpoint_evaluate"
    )
    return bind(refresh, studio), [table, chosen, *compared]
