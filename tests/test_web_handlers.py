"""The tabs' handlers are module-level functions of (studio, inputs, request): called here
directly, without a served app or a browser."""

from __future__ import annotations

import hashlib
import inspect
from types import SimpleNamespace

import gradio as gr
import pytest
from sqlalchemy import func, select

from app.core.errors import StudioError
from app.core.models import Campaign, Checkpoint, Job, JobState, RewardPreset, Role, Vote
from app.core.startup import prepare
from app.web.auth import Authenticator
from app.web.context import Studio
from app.web.ui import admin, arena, arena_view, checkpoints, common, lab, train
from tests.web_support import add_account, ready_campaign, stored_checkpoint, web_settings


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    settings = web_settings(tmp_path_factory.mktemp("handlers"))
    db = prepare(settings)
    studio = Studio(settings, db, Authenticator(db, settings.secret()))
    add_account(db, "tom", Role.TRAINER)
    add_account(db, "rae", Role.RATER)
    add_account(db, "ada", Role.ADMIN)
    return SimpleNamespace(
        studio=studio,
        db=db,
        settings=settings,
        trainer=SimpleNamespace(username="tom"),
        rater=SimpleNamespace(username="rae"),
        admin=SimpleNamespace(username="ada"),
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
    assert "overall" in question and "pair 1 of 2" in question
    *shown, _, confirm = arena.vote(
        ctx.studio, Role.RATER, "left", pair, campaign_id, "overall", ctx.rater
    )
    assert count(ctx.db, Vote) == 1 and "Vote saved: **Left**" in confirm
    assert shown[0] != pair and "pair 2 of 2" in shown[-1]
    with pytest.raises(gr.Error, match="already voted"):
        arena.vote(ctx.studio, Role.RATER, "right", pair, campaign_id, "overall", ctx.rater)
    summary, plot, verdict, rates, *_ = arena_view.show_results(
        ctx.studio, campaign_id, "overall", ctx.trainer
    )
    assert "1 counted votes" in summary and "bootstrap resamples" in summary
    assert set(rates["model"]) == {"base", "other"}
    assert plot.width > 300 and "not decided yet" in verdict
    path = arena_view.export(ctx.studio, "jsonl", campaign_id, "preferences", ctx.trainer)
    assert path.endswith(f"campaign-{campaign_id}-handlers-preferences.jsonl")
    with open(path, encoding="utf-8") as f:
        assert '"winner_model": "base"' in f.read()
    with pytest.raises(gr.Error, match="trainer role"):
        arena_view.show_results(ctx.studio, campaign_id, "overall", ctx.rater)


def test_a_rater_undoes_a_vote_and_sees_its_pair_again(ctx) -> None:
    campaign_id, _ = ready_campaign(ctx.db, ctx.settings, "undo", pairs=2)
    pair, *_ = arena.next_pair(ctx.studio, Role.RATER, campaign_id, "overall", ctx.rater)
    *_, vote_id, _ = arena.vote(
        ctx.studio, Role.RATER, "tie", pair, campaign_id, "overall", ctx.rater
    )
    with pytest.raises(gr.Error, match="no vote of yours"):
        arena.undo(ctx.studio, Role.TRAINER, vote_id, campaign_id, "overall", ctx.trainer)
    again, _, _, _, question, last, said = arena.undo(
        ctx.studio, Role.RATER, vote_id, campaign_id, "overall", ctx.rater
    )
    assert again == pair and "pair 1 of 2" in question and last is None and "undone" in said
    with ctx.db.session() as session:
        assert session.get(Vote, vote_id) is None
    with pytest.raises(gr.Error, match="no vote to undo"):
        arena.undo(ctx.studio, Role.RATER, None, campaign_id, "overall", ctx.rater)


def test_only_an_admin_excludes_a_rater_and_results_show_both(ctx) -> None:
    campaign_id, pairs = ready_campaign(ctx.db, ctx.settings, "exclude", pairs=2)
    for pair in pairs:
        arena.vote(ctx.studio, Role.RATER, "right", pair, campaign_id, "overall", ctx.rater)
        arena.vote(ctx.studio, Role.TRAINER, "left", pair, campaign_id, "overall", ctx.trainer)
    *_, raters, choices, _ = arena_view.show_results(
        ctx.studio, campaign_id, "overall", ctx.trainer
    )
    assert list(raters["status"]) == ["counted", "counted"]
    rae = next(value for label, value in choices["choices"] if label.startswith("rae"))
    with pytest.raises(gr.Error, match="admin role"):
        arena_view.exclude(ctx.studio, True, campaign_id, rae, "overall", ctx.trainer)
    summary, _, _, rates, _, everyone, raters, _, _ = arena_view.exclude(
        ctx.studio, True, campaign_id, rae, "overall", ctx.admin
    )
    assert "2 counted votes" in summary
    assert dict(zip(rates["model"], rates["wins"], strict=True)) == {"base": 2, "other": 0}
    assert "With every rater** (4 votes" in everyone and "rae" in everyone
    assert sorted(raters["status"]) == ["counted", "excluded"]
    back = arena_view.exclude(ctx.studio, False, campaign_id, rae, "overall", ctx.admin)
    assert "4 counted votes" in back[0] and back[5] == ""


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
    table, choices, model_a, _ = checkpoints.refresh(ctx.studio, ctx.trainer)
    assert checkpoint_id in set(table["id"]) and choices["choices"]
    assert ("base", "base") in model_a["choices"]  # the compare view's models


def test_evaluate_shows_its_result_in_the_model_card_and_the_table(ctx, monkeypatch) -> None:
    _, checkpoint_id, _ = stored_checkpoint(ctx.db, ctx.settings)
    assert "Not evaluated yet" in checkpoints.show(ctx.studio, checkpoint_id, ctx.trainer)[2]
    result = {"base": {"reward": 0.25}, "finetuned": {"reward": 0.75}}
    heard = []

    def evaluated(folder, prompts, on_step):
        on_step(1, 2)
        heard.append(folder.name)
        return result

    monkeypatch.setattr("srpo.evaluate.evaluate_checkpoint", evaluated)
    message, table, card = checkpoints.evaluate(ctx.studio, checkpoint_id, ctx.trainer)
    assert heard == ["step-000001"] and message.startswith("Evaluated on")
    assert "Not evaluated yet" not in card and "| reward | 0.2500 | 0.7500 |" in card
    assert table.set_index("id").loc[checkpoint_id, "eval reward"] == 0.75


def test_export_names_and_an_empty_forest_plot() -> None:
    from app.core.arena_export import export_name

    assert export_name(7, "Ünï  test/../x", "votes", "csv") == "campaign-7-n-test-x-raw-votes.csv"
    assert export_name(8, "", "preferences", "jsonl") == "campaign-8-preferences.jsonl"
    assert arena_view.forest_image([], ["overall"], ["base"]) is None


def test_the_sample_slider_follows_new_steps_only_from_the_newest(ctx) -> None:
    from PIL import Image

    from app.core import jobs, outputs
    from tests.web_support import tiny_config

    job_id = ctx.db.write(lambda s: jobs.submit(s, ctx.settings, tiny_config()).id)

    def sample(step: int) -> None:
        path = ctx.settings.storage / f"follow-{job_id}-{step}.png"
        Image.new("RGB", (8, 8), (step * 20, 0, 0)).save(path)
        ctx.db.write(
            lambda s: outputs.record_sample(
                s,
                ctx.settings.storage,
                path,
                model="base",
                prompt="p",
                seed=0,
                size=(8, 8),
                job_id=job_id,
                step=step,
            )
        )

    who = ctx.studio.authenticator.by_username("tom")
    sample(0)
    sample(2)
    *_, slider, _, grid, seen = train.job_view(ctx.studio, who, job_id, [0], at=0)
    assert slider["value"] == 2 and len(grid) == 1 and seen == [0, 2]
    sample(4)
    # looking at step 0 while step 4 arrives: the slider stays, its range grows
    *_, slider, _, grid, seen = train.job_view(ctx.studio, who, job_id, [0, 2], at=0)
    assert "value" not in slider and slider["maximum"] == 4 and seen == [0, 2]
    assert grid == gr.update()
    # at the newest known step it follows
    *_, slider, _, grid, seen = train.job_view(ctx.studio, who, job_id, [0, 2], at=2)
    assert slider["value"] == 4 and seen == [0, 2, 4]


def test_cancel_asks_first(ctx) -> None:
    shown, question = train.ask_cancel(ctx.studio, 12, ctx.trainer)
    assert shown["visible"] is True and "Cancel job 12?" in question
    with pytest.raises(gr.Error, match="choose a job"):
        train.ask_cancel(ctx.studio, None, ctx.trainer)


def test_the_admin_tab_shows_itself_to_admins_only(ctx) -> None:

    hidden, *unchanged = admin.refresh(ctx.studio, ctx.trainer)
    assert hidden["visible"] is False and all(u == gr.update() for u in unchanged)
    shown, users, tokens, names, _ = admin.refresh(ctx.studio, ctx.admin)
    assert shown["visible"] is True
    assert {"tom", "rae", "ada"} <= set(users["username"]) and set(names["choices"]) >= {"tom"}
    assert set(tokens["user"]) >= {"tom", "rae", "ada"}  # never the token itself
    assert "token" not in tokens.columns
    with pytest.raises(StudioError, match="role"):
        admin.refresh(ctx.studio, ctx.rater)


def test_compare_views_pair_steps_at_the_same_seeds_and_strip_one_seed(ctx) -> None:
    from PIL import Image

    from app.core import jobs, outputs
    from app.web.ui import train_compare
    from tests.web_support import tiny_config

    job_id = ctx.db.write(lambda s: jobs.submit(s, ctx.settings, tiny_config()).id)
    samples = ctx.settings.storage / "jobs" / str(job_id) / "output" / "samples"
    for step in (0, 2, 4):
        folder = samples / f"step-{step:06d}"
        folder.mkdir(parents=True)
        cells = [("a red circle", 0), ("a red circle", 1), ("a blue square", 0)]
        if step == 4:
            cells = cells[:2]  # step 4 lacks the blue square
        for n, (prompt, seed) in enumerate(cells):
            path = folder / f"{n:03d}-seed{seed}.png"
            Image.new("RGB", (8, 8), (step * 40, n * 60, 0)).save(path)
            ctx.db.write(
                lambda s, p=path, t=prompt, e=seed, st=step: outputs.record_sample(
                    s,
                    ctx.settings.storage,
                    p,
                    model="base",
                    prompt=t,
                    seed=e,
                    size=(8, 8),
                    job_id=job_id,
                    step=st,
                )
            )
        Image.new("RGB", (24, 8)).save(folder.with_suffix(".png"))  # the step's grid
    a, b, cell, _ = train_compare.compare_choices(ctx.studio, job_id, ctx.trainer)
    assert a["choices"] == b["choices"] == [0, 2, 4] and (a["value"], b["value"]) == (0, 4)
    assert "a blue square · seed 0" in cell["choices"]
    pairs, grids = train_compare.compare(ctx.studio, job_id, 0, 4, ctx.trainer)
    captions = [caption for _, caption in pairs]
    assert captions == [
        "step 0 · a red circle · seed 0",
        "step 4 · a red circle · seed 0",
        "step 0 · a red circle · seed 1",
        "step 4 · a red circle · seed 1",
    ]  # only what both steps have, A left of B
    assert all("/step-000000/" in p for p, _ in pairs[::2])
    assert [g.rsplit("/", 1)[-1] for g in grids] == ["step-000000.png", "step-000004.png"]
    strip = train_compare.strip(ctx.studio, job_id, "a blue square · seed 0", ctx.trainer)
    assert [caption for _, caption in strip] == ["step 0", "step 2"]
    with pytest.raises(gr.Error, match="choose a prompt and seed"):
        train_compare.strip(ctx.studio, job_id, "a zebra · seed 9", ctx.trainer)
    with pytest.raises(gr.Error, match="no samples at both"):
        train_compare.compare(ctx.studio, job_id, 0, 6, ctx.trainer)
    with pytest.raises(gr.Error, match="role"):
        train_compare.compare(ctx.studio, job_id, 0, 4, ctx.rater)
    # while the job runs the lists follow its new steps: B moves on while it is at the newest
    # step seen before, and other choices stay (an empty one takes its default)
    a, b, cell, newest = train_compare.follow_choices(
        ctx.studio, job_id, 2, 2, "a red circle · seed 1", 2, ctx.trainer
    )
    assert (a["value"], b["value"], cell["value"], newest) == (2, 4, "a red circle · seed 1", 4)
    a, b, _, _ = train_compare.follow_choices(ctx.studio, job_id, 0, 2, None, 4, ctx.trainer)
    assert (a["value"], b["value"]) == (0, 2)  # B chosen away from the newest: kept
    a, b, cell, _ = train_compare.follow_choices(
        ctx.studio, job_id, None, "", None, None, ctx.trainer
    )
    assert (a["value"], b["value"]) == (0, 4) and cell["value"] == cell["choices"][0]
    a, _, _, _ = train_compare.follow_choices(ctx.studio, job_id, 6, None, None, 4, ctx.trainer)
    assert a["value"] == 0  # a step the job does not have is not kept


def trained_checkpoint(ctx, name: str) -> int:
    """A real full checkpoint of the tiny demo (its weights moved a little, as by training)
    recorded for a new job called ``name``; returns the checkpoint id."""
    import torch

    from app.core import jobs, outputs
    from app.core.storage import job_dir
    from srpo.checkpoints import save_checkpoint
    from srpo.config import make_config
    from srpo.models import load_generator
    from tests.web_support import tiny_config

    options = tiny_config()
    job_id = ctx.db.write(lambda s: jobs.submit(s, ctx.settings, options, name=name).id)
    transformer = load_generator("tiny").transformer
    noise = torch.Generator().manual_seed(sum(map(ord, name)))
    with torch.no_grad():
        for param in transformer.parameters():
            param.add_(torch.randn(param.shape, generator=noise) * 0.05 * param.std().nan_to_num())
    optimizer = torch.optim.AdamW(transformer.parameters())
    manifest = {"config": make_config(options).model_dump(mode="json")}
    output = job_dir(ctx.settings.storage, job_id) / "output" / "checkpoints"
    saved = save_checkpoint(output, 2, transformer, False, optimizer, manifest)
    files = saved.manifest["files"]
    ctx.db.write(
        lambda s: outputs.record_checkpoint(
            s, ctx.settings.storage, job_id, saved.path, 2, saved.format, files
        )
    )
    with ctx.db.session() as session:
        return session.scalar(select(Checkpoint.id).where(Checkpoint.job_id == job_id))


def test_two_checkpoints_of_different_jobs_render_side_by_side_at_the_same_seeds(ctx) -> None:
    from app.web.ui import checkpoint_compare

    first = trained_checkpoint(ctx, "warm run")
    second = trained_checkpoint(ctx, "cool run")
    a, b = f"checkpoint:{first}", f"checkpoint:{second}"
    progress = lambda *args, **kwargs: None  # noqa: E731 (Gradio's progress, unused here)
    pairs, message = checkpoint_compare.compare_models(
        ctx.studio, a, b, "a red circle", "3,5", ctx.trainer, progress
    )
    assert [caption for _, caption in pairs] == [
        "A · warm run · step 2 · seed 3",
        "B · cool run · step 2 · seed 3",
        "A · warm run · step 2 · seed 5",
        "B · cool run · step 2 · seed 5",
    ]
    assert message.startswith("warm run · step 2 (left) against cool run · step 2 (right)")
    import numpy as np

    pixels = [np.asarray(image, dtype=float) for image, _ in pairs]
    assert pixels[0].shape == pixels[1].shape and np.abs(pixels[0] - pixels[1]).mean() > 1
    assert np.abs(pixels[0] - pixels[2]).mean() > 1  # another seed, another image
    again, _ = checkpoint_compare.compare_models(
        ctx.studio, a, "base", "a red circle", "3", ctx.trainer, progress
    )
    assert np.array_equal(np.asarray(again[0][0]), pixels[0])  # same model, prompt, seed
    assert again[1][1] == "B · base · seed 3"
    with pytest.raises(gr.Error, match="the same"):
        checkpoint_compare.compare_models(ctx.studio, a, a, "x", "0", ctx.trainer, progress)
    with pytest.raises(gr.Error, match="base or checkpoint:ID"):
        checkpoint_compare.compare_models(ctx.studio, a, "/etc", "x", "0", ctx.trainer, progress)
    with pytest.raises(gr.Error, match="role"):
        checkpoint_compare.compare_models(ctx.studio, a, b, "x", "0", ctx.rater, progress)
    refreshed = checkpoints.refresh(ctx.studio, ctx.trainer)
    assert ("warm run · step 2", a) in refreshed[2]["choices"]


def test_a_sampling_progress_bar_moves_at_the_first_and_last_step_and_every_so_often() -> None:
    moved: list[tuple[int, int]] = []
    now = [0.0]
    heard = common.every_so_often(lambda d, t: moved.append((d, t)), 0.2, lambda: now[0])
    for step in range(1, 61):  # 60 steps, 0.01 s apart
        heard(step, 60)
        now[0] += 0.01
    assert moved == [(1, 60), (21, 60), (41, 60), (60, 60)]


def test_the_lab_preview_shows_one_progress_bar_not_one_per_output(ctx) -> None:
    from app.web.ui import build_studio

    config = build_studio(ctx.studio).get_config_file()
    (event,) = [d for d in config["dependencies"] if d.get("api_name") == "lab_preview"]
    assert len(event["outputs"]) == 7
    assert len(event["show_progress_on"]) == 1 and event["show_progress_on"][0] in event["outputs"]
