"""Arena: campaigns, blind voting (also the raters' whole app), results and export.

Handlers: :func:`next_pair`, :func:`vote` and :func:`undo` (blind voting, for raters and
trainers), :func:`create_campaign`, :func:`tick` (rendering progress), :func:`refresh_voting`
and :func:`refresh`; the results are :mod:`app.web.ui.arena_view`'s. Campaigns and votes are
the core's (:mod:`app.core.arena`); the pairs' images are rendered by the worker.
"""

import gradio as gr
import pandas as pd
from PIL import Image
from sqlalchemy import select

from app.core import access, admission, arena, arena_next, dispatch
from app.core.errors import StudioError
from app.core.models import Campaign, CampaignState, Comparison, Role, User
from app.web.context import Studio
from app.web.ui import arena_view
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


CAMPAIGN_COLUMNS = ["id", "name", "state", "rendered", "models", "criteria", "prompts", "error"]


def campaign_table(studio: Studio) -> pd.DataFrame:
    """Every campaign with its state, how many of its images are rendered, and its models as
    people know them ("job name · step N")."""
    with studio.db.session() as session:
        found = session.scalars(select(Campaign).order_by(Campaign.id.desc())).all()
        labels = arena.model_labels(session, sorted({m for c in found for m in c.models}))
        rows = []
        for c in found:
            done, total = arena.rendering_progress(studio.settings.storage, c)
            rows.append(
                {
                    "id": c.id,
                    "name": c.name,
                    "state": arena.campaign_state(c),
                    "rendered": f"{done} of {total} images",
                    "models": ", ".join(labels[m] for m in c.models),
                    "criteria": ", ".join(c.criteria),
                    "prompts": len(c.prompts),
                    "error": c.error or "",
                }
            )
    return pd.DataFrame(rows, columns=CAMPAIGN_COLUMNS)


def rendering(studio: Studio) -> bool:
    """Whether any campaign is still waiting for its images."""
    with studio.db.session() as session:
        return (
            session.scalar(
                select(Campaign.id)
                .where(
                    Campaign.state == CampaignState.PENDING, Campaign.cancel_requested.is_(False)
                )
                .limit(1)
            )
            is not None
        )


def tick(studio: Studio, was_rendering: bool, request: gr.Request):
    """The timer's refresh: the campaign table (and the lists of campaigns) re-read while any
    campaign renders, and once more when the last one is done; nothing otherwise."""
    caller(studio, request, Role.TRAINER)
    now = rendering(studio)
    if not now and not was_rendering:
        return gr.skip(), gr.skip(), gr.skip(), False
    return (
        campaign_table(studio),
        gr.update(choices=campaign_choices(studio, ready_only=False)),
        refresh_voting(studio, Role.TRAINER, request),
        now,
    )


def labelled_models(studio: Studio) -> list[tuple[str, str]]:
    """The models a campaign can compare, as ``(job name · step N, reference)`` choices."""
    refs = model_choices(studio)
    with studio.db.session() as session:
        labels = arena.model_labels(session, refs)
    return [(labels[ref], ref) for ref in refs]


def _image(studio: Studio, session, pair: Comparison, side: str) -> Image.Image:
    """One side of a blind pair as pixels (so its file name, which names the model, never
    reaches the page); a gold pair's degraded side is degraded here."""
    rgb = arena.side_image(session, studio.settings.storage, pair, side)
    return rgb.resize((rgb.width * 4, rgb.height * 4), Image.NEAREST)


def _show(studio: Studio, session, pair: Comparison, judged: int, total: int, chosen) -> tuple:
    """A blind pair on screen, with its place in the campaign ("pair n of N")."""
    return (
        pair.id,
        pair.prompt,
        _image(studio, session, pair, "left"),
        _image(studio, session, pair, "right"),
        f"Which image is better for **{text(chosen)}**? · pair {judged + 1} of {total}",
    )


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
        return _show(studio, session, found.pair, found.judged, found.total, chosen)


@friendly
def vote(
    studio: Studio, role: Role, choice: str, current, campaign_id, chosen, request: gr.Request
):
    """Store the caller's ``choice`` on the pair on screen, confirm it (with undo for a few
    seconds), then show the next pair."""
    who = caller(studio, request, role)
    if current is None:
        raise StudioError("no pair on screen: press Next pair")

    def store(session) -> int:
        return arena.cast_vote(session, who.id, ident(current, "pair"), chosen, choice)

    vote_id = studio.db.write(store)
    said = dict((value, label) for label, value in CHOICES).get(choice, "Skip")
    confirm = (
        f"✓ Vote saved: **{said}** on {text(chosen)}. You can undo it for "
        f"{arena.UNDO_SECONDS:.0f} s."
    )
    return (*next_pair(studio, role, campaign_id, chosen, request), vote_id, confirm)


@friendly
def undo(studio: Studio, role: Role, last_vote, campaign_id, chosen, request: gr.Request):
    """Take back the caller's last vote (within :data:`arena.UNDO_SECONDS`) and show its pair
    again."""
    who = caller(studio, request, role)
    if last_vote is None:
        raise StudioError("no vote to undo")
    vote_id = ident(last_vote, "vote")
    pair_id = studio.db.write(lambda s: arena.undo_vote(s, who.id, vote_id).id)
    with studio.db.session() as session:
        count = arena_next.next_pair(session, ident(campaign_id, "campaign"), who.id, chosen)
        shown = _show(
            studio, session, session.get(Comparison, pair_id), count.judged, count.total, chosen
        )
    return (*shown, None, "↶ Vote undone: the pair is shown again.")


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
def stop_rendering(studio: Studio, campaign_id, request: gr.Request):
    """Stop rendering a campaign; the images made so far are kept for a resume."""
    who = caller(studio, request, Role.TRAINER)
    number = ident(campaign_id, "campaign")

    def stop(session) -> None:
        access.managed_campaign(session, studio.settings, number, who.id, who.role)
        arena.cancel_rendering(session, number)

    studio.db.write(stop)
    return f"Campaign {number}: rendering stops; its images are kept.", campaign_table(studio)


@friendly
def resume_rendering(studio: Studio, campaign_id, request: gr.Request):
    """Render what a stopped or failed campaign still lacks (kept images are not redone)."""
    who = caller(studio, request, Role.TRAINER)
    number = ident(campaign_id, "campaign")

    def resume(session) -> None:
        access.managed_campaign(session, studio.settings, number, who.id, who.role)
        arena.resume_rendering(session, number)

    studio.db.write(resume)
    dispatch.send(studio.settings, dispatch.PAIRS_TASK, [number])
    return f"Campaign {number}: rendering resumes.", campaign_table(studio)


def refresh(studio: Studio, request: gr.Request):
    """The tab's lists, re-read: models, campaigns, campaigns open for votes."""
    caller(studio, request, Role.TRAINER)
    return (
        gr.update(choices=labelled_models(studio)),
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
    with gr.Row():
        confirm = gr.Markdown(elem_classes=["status", "vote-confirm"])
        take_back = gr.Button("Undo last vote", variant="secondary", scale=0)
    last_vote = gr.State(None)

    pair_outputs = [pair_id, prompt, left, right, status]
    show_next = bind(next_pair, studio, role)
    start.click(show_next, [campaign, criterion], pair_outputs, api_name="arena_next")
    campaign.change(show_next, [campaign, criterion], pair_outputs)
    for button, (_, choice) in zip([*buttons, skip], [*CHOICES, ("Skip", "skip")], strict=True):
        cast = bind(vote, studio, role, choice)
        cast.__name__ = f"vote_{choice}"
        button.click(
            cast,
            [pair_id, campaign, criterion],
            [*pair_outputs, last_vote, confirm],
            api_name=f"vote_{choice}",
        )
    take_back.click(
        bind(undo, studio, role),
        [last_vote, campaign, criterion],
        [*pair_outputs, last_vote, confirm],
        api_name="vote_undo",
    )
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
        with gr.Row():
            stop = gr.Button("Stop rendering", variant="stop", scale=0)
            resume = gr.Button("Resume rendering", variant="secondary", scale=0)
            rendering_status = gr.Markdown(elem_classes=["status"])
    with gr.Accordion("Vote (blind: sides are random, models hidden)", open=True):
        _, vote_outputs = build_voting(studio, Role.TRAINER)
    with gr.Accordion("Results", open=True):
        result_campaign = gr.Dropdown([], label="Campaign", allow_custom_value=True)
        arena_view.build_results(studio, result_campaign)
    timer = gr.Timer(3.0)
    was_rendering = gr.State(True)

    create.click(
        bind(create_campaign, studio),
        [name, models, prompts, seeds, criteria],
        [create_status, table, result_campaign],
        api_name="arena_create",
    )
    # they act on the campaign chosen under Results (create and the timer keep it current)
    stop.click(
        bind(stop_rendering, studio),
        [result_campaign],
        [rendering_status, table],
        api_name="arena_stop_rendering",
    )
    resume.click(
        bind(resume_rendering, studio),
        [result_campaign],
        [rendering_status, table],
        api_name="arena_resume_rendering",
    )
    timer.tick(
        bind(tick, studio),
        [was_rendering],
        [table, result_campaign, *vote_outputs, was_rendering],
        show_progress="hidden",
    )
    return bind(refresh, studio), [models, table, result_campaign, *vote_outputs]
