"""Checkpoints tab: steps, rewards, judged metrics, downloads, model cards, loading snippets."""

import html

import gradio as gr
import pandas as pd

from app.errors import StudioError
from app.models import Job, Role
from app.storage import resolve
from app.web import cards, queries, results
from app.web.context import Studio
from app.web.ui.common import Refresh, caller, friendly, ident

EVAL_PROMPTS = 16
JUDGED = ("prompt_fidelity", "judged_positive_rate", "judged_negative_rate")


def checkpoint_table(studio: Studio) -> pd.DataFrame:
    """Every checkpoint with its training reward and, once evaluated, judged metrics."""
    with studio.db.session() as session:
        rows = queries.checkpoint_rows(session)
        arena = {r["id"]: results.checkpoint_arena(session, r["id"]) for r in rows}
    table = []
    for r in rows:
        evaluation = cards.load_evaluation(studio.settings, r["id"]) or {}
        tuned = evaluation.get("finetuned", {})
        wins = "; ".join(
            f"{a['criterion']} {a['rate']:.0%} ({a['n']})" for a in arena[r["id"]] if a["n"]
        )
        table.append(
            {
                "id": r["id"],
                "job": f"{r['job_id']}: {r['job_name']}",
                "step": r["step"],
                "format": r["format"],
                "MB": round(r["size_bytes"] / 2**20, 2),
                "train reward": round(r["train_reward"], 4) if r["train_reward"] else "",
                "eval reward": round(tuned["reward"], 4) if "reward" in tuned else "",
                **{k.replace("_", " "): round(tuned[k], 3) if k in tuned else "" for k in JUDGED},
                "arena": wins,
                "sha256": r["sha256"][:16] + "…",
            }
        )
    return pd.DataFrame(table)


def build(studio: Studio) -> Refresh:
    """Add the Checkpoints tab's components and events to the current Blocks."""
    table = gr.Dataframe(label="Checkpoints", interactive=False, wrap=True)
    with gr.Row():
        chosen = gr.Dropdown([], label="Checkpoint", allow_custom_value=True)
        evaluate = gr.Button("Evaluate (judged, tiny world)")
    sha = gr.Textbox(label="sha256 of the weights", interactive=False, buttons=["copy"])
    download = gr.HTML()
    with gr.Row():
        card = gr.Code(label="Model card (Markdown)", language="markdown", interactive=False)
        snippet = gr.Code(label="Load it in diffusers", language="python", interactive=False)
    status = gr.Markdown(elem_classes=["status"])

    @friendly
    def show(checkpoint_id, request: gr.Request):
        caller(studio, request, Role.TRAINER)
        if checkpoint_id is None:
            return "", "", "", ""
        with studio.db.session() as session:
            found = queries.checkpoint(session, ident(checkpoint_id, "checkpoint"))
            config = session.get(Job, found.job_id).config
            arena = results.checkpoint_arena(session, found.id)
        evaluation = cards.load_evaluation(studio.settings, found.id)
        link = (
            f'<div class="downloads"><a class="download" href="/api/v1/checkpoints/{found.id}/'
            f'download" download>Download weights ({html.escape(found.weights_file)})</a> '
            f'<a class="download" href="/api/v1/checkpoints/{found.id}/model-card" download='
            f'"model-card-{found.id}.md">Download model card</a></div>'
        )
        return (
            found.sha256,
            link,
            cards.model_card(found, config, evaluation, arena),
            cards.diffusers_snippet(found, config),
        )

    chosen.change(show, [chosen], [sha, download, card, snippet], api_name="checkpoint_show")

    @friendly
    def run_evaluate(checkpoint_id, request: gr.Request):
        from srpo.evaluate import evaluate_checkpoint

        caller(studio, request, Role.TRAINER)
        if checkpoint_id is None:
            raise StudioError("choose a checkpoint")
        with studio.db.session() as session:
            found = queries.checkpoint(session, ident(checkpoint_id, "checkpoint"))
            folder = resolve(studio.settings.storage, found.path)
        with studio.models.lock:
            result = evaluate_checkpoint(folder, prompts=EVAL_PROMPTS)
        cards.save_evaluation(studio.settings, ident(checkpoint_id, "checkpoint"), result)
        return f"Evaluated on {EVAL_PROMPTS} held-out prompts.", checkpoint_table(studio)

    evaluate.click(run_evaluate, [chosen], [status, table], api_name="checkpoint_evaluate")

    def refresh(request: gr.Request):
        caller(studio, request, Role.TRAINER)
        with studio.db.session() as session:
            rows = queries.checkpoint_rows(session)
        choices = [(f"{r['id']}: job {r['job_id']} step {r['step']}", r["id"]) for r in rows]
        return checkpoint_table(studio), gr.update(choices=choices)

    return refresh, [table, chosen]
