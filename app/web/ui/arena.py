"""Arena: campaigns, blind voting (also the raters' whole app), results and export.

Handlers: :func:`next_pair` and :func:`vote` (blind voting, for raters and trainers),
:func:`create_campaign`, :func:`show_results`, :func:`export`, :func:`refresh_voting` and
:func:`refresh`. Campaigns, votes and results are the core's (:mod:`app.core.arena`,
:mod:`app.core.arena_results`); the pairs' images are rendered by the worker.
"""

import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd
from PIL import Image
from sqlalchemy import select

from app.core import admission, arena, arena_next, arena_results, dispatch
from app.core.errors import StudioError
from app.core.models import Campaign, CampaignState, Comparison, Role, User
from app.web.context import Studio
from app.web.ui.common import Refresh, bind, caller, friendly, ident, lines, text
from app.web.ui.lab import model_choices

CHOICES = (("Left", "left"), ("Right", "right"), ("Tie", "tie"), ("Both bad", "both_bad"))


def campaign_choices(studio: Studio, ready_only: bool) -> list[tuple[str, int]]:
    """Campaigns as dropdown choices (only those open for votes, if asked)."""
    with studio.db.session() as session:
        query = select(Campaign).order_by(Campaign.id.desc())
        if ready_only:
            query = query.where(Campaign.state == CampaignState.READY)
        return [(f"{c.id}: {c.name}", c.id) for c in session.scalars(query)]


def campaign_table(studio: Studio) -> pd.DataFrame:
    """Every campaign with its state."""
    with studio.db.session() as session:
        found = session.scalars(select(Campaign).order_by(Campaign.id.desc())).all()
        return pd.DataFrame(
            [
                {
                    "id": c.id,
                    "name": c.name,
                    "state": arena.campaign_state(c),
                    "models": ", ".join(c.models),
                    "criteria": ", ".join(c.criteria),
                    "prompts": len(c.prompts),
                    "error": c.error or "",
                }
                for c in found
            ],
            columns=["id", "name", "state", "models", "criteria", "prompts", "error"],
        )


def _image(studio: Studio, session, pair: Comparison, side: str) -> Image.Image:
    """One side of a blind pair as pixels (so its file name, which names the model, never
    reaches the page); a gold pair's degraded side is degraded here."""
    rgb = arena.side_image(session, studio.settings.storage, pair, side)
    return rgb.resize((rgb.width * 4, rgb.height * 4), Image.NEAREST)


@friendly
def next_pair(studio: Studio, role: Role, campaign_id, chosen, request: gr.Request):
    """A blind pair of the campaign the caller has not judged on ``chosen`` yet, with how many
    of the campaign's pairs they have judged ("n of N"), or why there is nothing to rate."""
    who = caller(studio, request, role)
    if campaign_id is None:
        raise StudioError("choose a campaign open for votes")
    with studio.db.session() as session:
        found = arena_next.next_pair(session, ident(campaign_id, "campaign"), who.id, chosen)
        if found.pair is None:
            reason = found.reason or "nothing to rate"
            done = f"{reason[0].upper()}{reason[1:]}. Nothing to rate here now."
            return None, "", None, None, f"{done} ({found.judged} of {found.total} judged)"
        pair = found.pair
        return (
            pair.id,
            pair.prompt,
            _image(studio, session, pair, "left"),
            _image(studio, session, pair, "right"),
            f"Which image is better for **{text(chosen)}**? · pair {found.judged + 1} of "
            f"{found.total}",
        )


@friendly
def vote(
    studio: Studio, role: Role, choice: str, current, campaign_id, chosen, request: gr.Request
):
    """Store the caller's ``choice`` on the pair on screen, then show the next pair."""
    who = caller(studio, request, role)
    if current is None:
        raise StudioError("no pair on screen: press Next pair")

    def store(session) -> int:
        return arena.cast_vote(session, who.id, ident(current, "pair"), chosen, choice)

    studio.db.write(store)
    return next_pair(studio, role, campaign_id, chosen, request)


def refresh_voting(studio: Studio, role: Role, request: gr.Request):
    """The campaigns open for votes."""
    caller(studio, request, role)
    return gr.update(choices=campaign_choices(studio, ready_only=True))


@friendly
def create_campaign(
    studio: Studio, name, chosen, prompt_text, seed_text, wanted, request: gr.Request
):
    """Store a campaign and send its pairs to the worker to render."""
    from srpo.sampling import parse_seeds

    who = caller(studio, request, Role.TRAINER)
    seed_list = parse_seeds(seed_text or "")
    prompt_list = lines(prompt_text)
    admission.campaign_size(studio.settings, len(chosen or []), len(prompt_list), len(seed_list))

    def store(session) -> int:
        found = arena.create_campaign(
            session,
            name or "",
            list(chosen or []),
            prompt_list,
            seed_list,
            list(wanted or []),
            session.get(User, who.id),
        )
        session.flush()
        return found.id

    campaign_id = studio.db.write(store)
    dispatch.send(studio.settings, dispatch.PAIRS_TASK, [campaign_id])
    return (
        f"Created campaign {campaign_id}; its images are being rendered.",
        campaign_table(studio),
        gr.update(choices=campaign_choices(studio, ready_only=False), value=campaign_id),
    )


@friendly
def show_results(studio: Studio, campaign_id, chosen, request: gr.Request):
    """Win rates, Bradley-Terry scores and human-reward agreement of a campaign."""
    caller(studio, request, Role.TRAINER)
    if campaign_id is None:
        raise StudioError("choose a campaign")
    found = arena_results.results(
        studio.db, studio.pair_scores, ident(campaign_id, "campaign"), chosen
    )
    agreement = found["agreement"]
    agree = (
        "no decided pairs yet"
        if not agreement or not agreement["decided"]
        else f"{agreement['rate']:.0%} of {agreement['decided']} decided pairs "
        f"[{agreement['low']:.2f}, {agreement['high']:.2f}]"
    )
    text_summary = (
        f"**{text(found['campaign'])}** · {text(found['criterion'])} · {found['votes']} "
        f"counted votes · human-reward agreement: {agree}"
    )
    # the tables keep the columns their headers name (labels are not shown here yet)
    rates = pd.DataFrame(found["win_rates"]).drop(columns="label", errors="ignore")
    scores = pd.DataFrame(found["bradley_terry"]).drop(columns="label", errors="ignore")
    return text_summary, rates, scores


@friendly
def export(studio: Studio, fmt: str, campaign_id, request: gr.Request):
    """The campaign's preference dataset as a ``jsonl`` or ``csv`` file to download."""
    caller(studio, request, Role.TRAINER)
    if campaign_id is None:
        raise StudioError("choose a campaign")
    with studio.db.session() as session:
        data = arena_results.export(
            session, ident(campaign_id, "campaign"), fmt, view="preferences"
        )
    folder = Path(tempfile.mkdtemp(prefix="srpo-export-"))
    path = folder / f"campaign-{ident(campaign_id, 'campaign')}-preferences.{fmt}"
    path.write_text(data, encoding="utf-8")
    return str(path)


def refresh(studio: Studio, request: gr.Request):
    """The tab's lists, re-read: models, campaigns, campaigns open for votes."""
    caller(studio, request, Role.TRAINER)
    return (
        gr.update(choices=model_choices(studio)),
        campaign_table(studio),
        gr.update(choices=campaign_choices(studio, ready_only=False)),
        refresh_voting(studio, Role.TRAINER, request),
    )


def build_voting(studio: Studio, role: Role) -> Refresh:
    """Lay out blind pair voting; returns (refresh function, its outputs) for the page load."""
    pair_id = gr.State(None)
    with gr.Row():
        campaign = gr.Dropdown([], label="Campaign", allow_custom_value=True)
        criterion = gr.Dropdown(
            list(arena.CRITERIA), value="overall", label="Criterion", allow_custom_value=False
        )
        start = gr.Button("Next pair")
    prompt = gr.Textbox(label="Prompt", interactive=False)
    with gr.Row(equal_height=True):
        left = gr.Image(label="Left", interactive=False, type="pil", elem_classes=["arena-image"])
        right = gr.Image(label="Right", interactive=False, type="pil", elem_classes=["arena-image"])
    with gr.Row():
        buttons = [gr.Button(label, elem_classes=["vote"]) for label, _ in CHOICES]
        skip = gr.Button("Skip", variant="secondary")
    status = gr.Markdown(elem_classes=["status"])

    pair_outputs = [pair_id, prompt, left, right, status]
    show_next = bind(next_pair, studio, role)
    start.click(show_next, [campaign, criterion], pair_outputs, api_name="arena_next")
    campaign.change(show_next, [campaign, criterion], pair_outputs)
    for button, (_, choice) in zip([*buttons, skip], [*CHOICES, ("Skip", "skip")], strict=True):
        cast = bind(vote, studio, role, choice)
        cast.__name__ = f"vote_{choice}"
        button.click(cast, [pair_id, campaign, criterion], pair_outputs, api_name=f"vote_{choice}")
    return bind(refresh_voting, studio, role), [campaign]


def build(studio: Studio) -> Refresh:
    """Lay out the studio's Arena tab and wire its events to the handlers above."""
    with gr.Accordion("New campaign", open=True):
        with gr.Row():
            name = gr.Textbox(label="Name", max_length=200)
            models = gr.CheckboxGroup(["base"], label="Models (two or more)")
        with gr.Row():
            prompts = gr.Textbox(label="Prompts (one per line)", lines=3)
            seeds = gr.Textbox(label="Seeds", value="0-1", max_length=200)
            criteria = gr.CheckboxGroup(list(arena.CRITERIA), value=["overall"], label="Criteria")
        create = gr.Button("Create campaign", variant="primary")
        create_status = gr.Markdown(elem_classes=["status"])
        table = gr.Dataframe(campaign_table(studio), label="Campaigns", interactive=False)
    with gr.Accordion("Vote (blind: sides are random, models hidden)", open=True):
        _, vote_outputs = build_voting(studio, Role.TRAINER)
    with gr.Accordion("Results", open=True):
        with gr.Row():
            result_campaign = gr.Dropdown([], label="Campaign", allow_custom_value=True)
            result_criterion = gr.Dropdown(
                list(arena.CRITERIA), value="overall", label="Criterion", allow_custom_value=False
            )
            show = gr.Button("Show results")
        summary = gr.Markdown()
        rates = gr.Dataframe(
            headers=["model", "wins", "losses", "ties", "win_rate", "wilson_low", "wilson_high"],
            label="Win rates (Wilson 95% intervals, ties count half)",
            interactive=False,
        )
        scores = gr.Dataframe(
            headers=["model", "score", "low", "high"],
            label="Bradley-Terry scores (bootstrap 95% intervals; base = 0)",
            interactive=False,
        )
        with gr.Row():
            export_jsonl = gr.Button("Export JSONL")
            export_csv = gr.Button("Export CSV")
        export_file = gr.File(label="Preference dataset", interactive=False, height=80)

    create.click(
        bind(create_campaign, studio),
        [name, models, prompts, seeds, criteria],
        [create_status, table, result_campaign],
        api_name="arena_create",
    )
    show.click(
        bind(show_results, studio),
        [result_campaign, result_criterion],
        [summary, rates, scores],
        api_name="arena_results",
    )
    for button, fmt in ((export_jsonl, "jsonl"), (export_csv, "csv")):
        run_export = bind(export, studio, fmt)
        run_export.__name__ = f"export_{fmt}"
        button.click(run_export, [result_campaign], [export_file], api_name=f"arena_{fmt}")
    return bind(refresh, studio), [models, table, result_campaign, *vote_outputs]
