"""The tabs' handlers are module-level functions of (studio, inputs, request): called here
directly, without a served app or a browser."""

from __future__ import annotations

import hashlib
import inspect
from types import SimpleNamespace

import gradio as gr
import pytest
from sqlalchemy import func, select

from app.core.models import Campaign, Job, JobState, RewardPreset, Role, Vote
from app.core.startup import prepare
from app.web.auth import Authenticator
from app.web.context import Studio
from app.web.ui import arena, checkpoints, common, lab, train
from tests.web_support import add_account, ready_campaign, stored_checkpoint, web_settings


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    settings = web_settings(tmp_path_factory.mktemp("handlers"))
    db = prepare(settings)
    studio = Studio(settings, db, Authenticator(db, settings.secret()))
    add_account(db, "tom", Role.TRAINER)
    add_account(db, "rae", Role.RATER)
    return SimpleNamespace(
        studio=studio,
        db=db,
        settings=settings,
        trainer=SimpleNamespace(username="tom"),
        rater=SimpleNamespace(username="rae"),
    )


def count(db, model) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_bind_keeps_what_gradio_reads_from_a_handler(ctx) -> None:
    bound = common.bind(train.submit, ctx.studio)
    parameters = list(inspect.signature(bound).parameters)
    assert parameters[0] == "preset" and parameters[-1] == "request"
    assert bound.__name__ == "submit"
    from gradio.utils import get_type_hints

    assert get_type_hints(bound)["request"] is gr.Request
    vote = common.bind(arena.vote, ctx.studio, Role.RATER, "left")
    assert list(inspect.signature(vote).parameters) == [
        "current",
        "campaign_id",
        "chosen",
        "request",
    ]


def test_handlers_refuse_callers_without_the_role(ctx) -> None:
    with pytest.raises(gr.Error, match="trainer role"):
        train.apply_preset(ctx.studio, "tiny-demo", ctx.rater)
    with pytest.raises(gr.Error, match="not signed in"):
        lab.load_preset(ctx.studio, "x", SimpleNamespace(username=None))


def test_train_handlers_fill_validate_queue_and_cancel(ctx) -> None:
    values = train.apply_preset(ctx.studio, "tiny-demo", ctx.trainer)
    assert "sample_every: 10" in values[0] and values[-1] == 10
    verdict = train.validate(ctx.studio, "tiny-demo", *values, ctx.trainer)
    assert verdict.startswith("✓ Valid: srpo on tiny, 40 steps")
    bad = list(values)
    bad[4] = 0  # steps
    assert "Fix before queueing" in train.validate(ctx.studio, "tiny-demo", *bad, ctx.trainer)
    before = count(ctx.db, Job)
    with pytest.raises(gr.Error, match="steps"):
        train.submit(ctx.studio, "tiny-demo", "bad", *bad, ctx.trainer)
    assert count(ctx.db, Job) == before
    message, table, chosen = train.submit(
        ctx.studio, "tiny-demo", "handler job", *values, ctx.trainer
    )
    assert message.startswith("Queued job") and "handler job" in set(table["name"])
    job_id = chosen["value"]
    progress, *_ = train.show_job(ctx.studio, job_id, ctx.trainer)
    assert f"Job {job_id}: handler job" in progress and "queue position" in progress
    train.cancel(ctx.studio, job_id, ctx.trainer)
    with ctx.db.session() as session:
        assert session.get(Job, job_id).state == JobState.CANCELLED
    with pytest.raises(gr.Error, match="already cancelled"):
        train.cancel(ctx.studio, job_id, ctx.trainer)
    assert train.show_samples(ctx.studio, job_id, 0, ctx.trainer) == []


def test_lab_presets_save_once_and_load(ctx) -> None:
    status, _ = lab.save_preset(ctx.studio, "warm", "photo", "painting", 0.3, ctx.trainer)
    assert "Saved" in status
    with pytest.raises(gr.Error, match="exists"):
        lab.save_preset(ctx.studio, "warm", "photo", "painting", 0.3, ctx.trainer)
    assert count(ctx.db, RewardPreset) == 1
    assert lab.load_preset(ctx.studio, "warm", ctx.trainer) == ("photo", "painting", 0.3)
    presets, models = lab.refresh(ctx.studio, ctx.trainer)
    assert presets["choices"] == ["warm"] and models["choices"][0] == "base"


def test_arena_handlers_vote_once_show_results_and_export(ctx) -> None:
    campaign_id, pairs = ready_campaign(ctx.db, ctx.settings, "handlers", pairs=2)
    pair, prompt, left, right, question = arena.next_pair(
        ctx.studio, Role.RATER, campaign_id, "overall", ctx.rater
    )
    assert pair in pairs and prompt == "a red circle" and left.size == right.size
    assert "overall" in question
    arena.vote(ctx.studio, Role.RATER, "left", pair, campaign_id, "overall", ctx.rater)
    assert count(ctx.db, Vote) == 1
    with pytest.raises(gr.Error, match="already voted"):
        arena.vote(ctx.studio, Role.RATER, "right", pair, campaign_id, "overall", ctx.rater)
    summary, rates, _ = arena.show_results(ctx.studio, campaign_id, "overall", ctx.trainer)
    assert "1 counted votes" in summary and set(rates["model"]) == {"base", "other"}
    with open(arena.export(ctx.studio, "jsonl", campaign_id, ctx.trainer), encoding="utf-8") as f:
        assert '"winner_model": "base"' in f.read()
    with pytest.raises(gr.Error, match="trainer role"):
        arena.show_results(ctx.studio, campaign_id, "overall", ctx.rater)


def test_a_bad_campaign_is_refused_before_anything_is_sent(ctx) -> None:
    before = count(ctx.db, Campaign)
    with pytest.raises(gr.Error, match="at least two different models"):
        arena.create_campaign(
            ctx.studio, "one", ["base"], "a red circle", "0", ["overall"], ctx.trainer
        )
    assert count(ctx.db, Campaign) == before


def test_checkpoint_handler_shows_sha_card_and_snippet(ctx) -> None:
    _, checkpoint_id, weights = stored_checkpoint(ctx.db, ctx.settings)
    sha, link, card, snippet = checkpoints.show(ctx.studio, checkpoint_id, ctx.trainer)
    assert sha == hashlib.sha256(weights).hexdigest() and sha in card
    assert f"/api/v1/checkpoints/{checkpoint_id}/download" in link and "load_file" in snippet
    table, choices = checkpoints.refresh(ctx.studio, ctx.trainer)
    assert checkpoint_id in set(table["id"]) and choices["choices"]
