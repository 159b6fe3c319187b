"""Campaign rendering in bounded chunks: cancellable, resumable after a restart, nothing
rendered twice, and never a whole campaign in one task (issue 14)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
import torch

from app.core import arena, arena_rendering
from app.core.maintenance import maintain_once
from app.core.models import Campaign, CampaignState, Comparison
from app.core.startup import prepare
from tests.web_support import stored_checkpoint, web_settings
from worker import rendering

PROMPTS = ["a red circle", "a blue square"]
SEEDS = [3, 5]


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A campaign of base and two checkpoints (12 images), a sampler that counts what it
    draws, and a broker stand-in that records the rendering tasks sent."""
    settings = web_settings(tmp_path, render_chunk=5)
    db = prepare(settings)
    refs = ["base"] + [f"checkpoint:{stored_checkpoint(db, settings, step=n)[1]}" for n in (1, 2)]
    campaign_id = db.write(
        lambda s: arena.create_campaign(s, "chunks", refs, PROMPTS, SEEDS, ["overall"]).id
    )
    drawn: Counter = Counter()
    sent: list[int] = []

    def sample(generator, prompts, seeds, steps, shift, on_step=None):
        if on_step is not None:
            on_step(1, 1)
        drawn.update((generator, p, s) for p, s in zip(prompts, seeds, strict=True))
        return torch.rand(len(prompts), 3, 8, 8)

    monkeypatch.setattr("srpo.sampling.sample_images", sample)
    monkeypatch.setattr(rendering.model_refs, "load", lambda model: model.ref)
    monkeypatch.setattr(rendering.model_refs, "sampling_steps", lambda config: (1, 1.0))
    monkeypatch.setattr(rendering.dispatch, "send", lambda s, task, args: sent.append(args[0]))
    monkeypatch.setattr("app.core.maintenance.dispatch.send", lambda s, t, a: sent.append(a[0]))
    return settings, db, campaign_id, drawn, sent


def state(db, campaign_id: int) -> str:
    with db.session() as session:
        return arena.campaign_state(session.get(Campaign, campaign_id))


def test_a_campaign_renders_in_bounded_chunks_each_image_once(world):
    settings, db, campaign_id, drawn, sent = world
    chunks = 0
    while rendering.generate_pairs(db, settings, campaign_id) == 0:
        chunks += 1
        assert sum(drawn.values()) <= chunks * settings.render_chunk
        assert sent == [campaign_id] * chunks  # the next chunk queued behind other work
    assert chunks == 2  # 12 images in chunks of 5: two tasks queue a successor, the third ends
    assert len(drawn) == 12 and set(drawn.values()) == {1}
    assert state(db, campaign_id) == CampaignState.READY.value
    with db.session() as session:
        assert session.query(Comparison).filter_by(campaign_id=campaign_id).count() >= 12


def test_cancelled_rendering_keeps_its_images_and_resumes_after_a_restart(world):
    settings, db, campaign_id, drawn, sent = world
    assert rendering.generate_pairs(db, settings, campaign_id) == 0
    with pytest.raises(arena.Conflict, match="is rendering"):  # one task renders it already
        db.write(lambda s: arena.resume_rendering(s, campaign_id))
    db.write(lambda s: arena.cancel_rendering(s, campaign_id))
    assert state(db, campaign_id) == "cancelled"
    sent.clear()
    assert rendering.generate_pairs(db, settings, campaign_id) == 0  # the queued chunk stops
    assert sum(drawn.values()) == 5 and sent == []
    assert maintain_once(db, settings, {}).campaigns == []  # cancelled: not sent again
    db.write(lambda s: arena.resume_rendering(s, campaign_id))
    # A restart: the new maintenance loop (empty memory) sends the pending campaign once.
    memory: dict[int, float] = {}
    assert maintain_once(db, settings, memory).campaigns == [campaign_id]
    assert maintain_once(db, settings, memory).campaigns == []
    while rendering.generate_pairs(db, settings, campaign_id) == 0:
        pass
    assert len(drawn) == 12 and set(drawn.values()) == {1}  # nothing rendered twice
    assert state(db, campaign_id) == CampaignState.READY.value
    with pytest.raises(arena.Conflict):
        db.write(lambda s: arena.cancel_rendering(s, campaign_id))


def test_a_duplicate_rendering_task_renders_nothing_and_sends_nothing(world, monkeypatch):
    """The maintenance loop re-sends a pending campaign's task, and a restart may leave one in
    the broker: a second task arriving while the first renders ends at once, so no image is
    drawn twice and the chain of chunk tasks does not double."""
    settings, db, campaign_id, drawn, sent = world
    duplicates = []
    inner = rendering.render

    def render_with_a_duplicate(*args, **kwargs):
        if not duplicates:
            duplicates.append("running")
            before = sum(drawn.values())
            duplicates[0] = rendering.generate_pairs(db, settings, campaign_id)
            assert sum(drawn.values()) == before and sent == []
        return inner(*args, **kwargs)

    monkeypatch.setattr(rendering, "render", render_with_a_duplicate)
    while rendering.generate_pairs(db, settings, campaign_id) == 0:
        pass
    assert duplicates == [0]
    assert len(drawn) == 12 and set(drawn.values()) == {1}  # every image once
    assert sent == [campaign_id, campaign_id]  # one chain: a successor per chunk but the last
    assert state(db, campaign_id) == CampaignState.READY.value


def test_an_expired_render_lease_passes_to_the_next_task_only(world):
    settings, db, campaign_id, _, _ = world
    later = arena.utcnow() + timedelta(seconds=settings.lease_seconds + 1)
    assert db.write(lambda s: arena_rendering.claim_rendering(s, campaign_id, "dead worker", 60))
    assert not db.write(lambda s: arena_rendering.claim_rendering(s, campaign_id, "second", 60))
    assert db.write(
        lambda s: arena_rendering.claim_rendering(s, campaign_id, "second", 60, now=later)
    )
    assert not db.write(
        lambda s: arena_rendering.claim_rendering(s, campaign_id, "dead worker", 60)
    )
    db.write(
        lambda s: arena_rendering.release_rendering(s, campaign_id, "dead worker")
    )  # not its own
    assert not db.write(lambda s: arena_rendering.claim_rendering(s, campaign_id, "third", 60))
    db.write(lambda s: arena_rendering.release_rendering(s, campaign_id, "second"))
    assert db.write(lambda s: arena_rendering.claim_rendering(s, campaign_id, "third", 60))
    db.write(lambda s: arena_rendering.release_rendering(s, campaign_id, "third"))


def test_a_task_whose_lease_was_taken_over_stops_without_failing_the_campaign(world, monkeypatch):
    settings, db, campaign_id, _, sent = world
    settings = settings.model_copy(update={"heartbeat_seconds": 1e-9})  # renew at every step
    far = arena.utcnow() + timedelta(hours=1)

    def sample_while_stolen(generator, prompts, seeds, steps, shift, on_step=None):
        # this task stalled past its lease, and another took the campaign over
        db.write(
            lambda s: arena_rendering.claim_rendering(s, campaign_id, "other task", 60, now=far)
        )
        on_step(1, 1)
        raise AssertionError("the stalled task went on rendering")  # pragma: no cover

    monkeypatch.setattr("srpo.sampling.sample_images", sample_while_stolen)
    assert rendering.generate_pairs(db, settings, campaign_id) == 0
    assert state(db, campaign_id) == CampaignState.PENDING.value and sent == []


def test_maintenance_leaves_a_held_campaign_alone_and_resends_a_lost_one_soon(world):
    settings, db, campaign_id, _, _ = world
    memory: dict[int, float] = {}
    assert db.write(lambda s: arena_rendering.claim_rendering(s, campaign_id, "busy task", 60))
    assert maintain_once(db, settings, memory).campaigns == []  # a task renders it now
    # the worker died: once its lease has run out the campaign is sent, and again after one
    # lease (not after redispatch_seconds, 30 min) while nobody takes it
    gone = arena.utcnow() - timedelta(seconds=1)
    db.write(lambda s: arena_rendering.claim_rendering(s, campaign_id, "busy task", -2, now=gone))
    assert maintain_once(db, settings, memory).campaigns == [campaign_id]
    assert maintain_once(db, settings, memory).campaigns == []
    memory[campaign_id] -= settings.lease_seconds
    assert maintain_once(db, settings, memory).campaigns == [campaign_id]


def test_a_cancel_stops_the_chunk_being_rendered_at_its_next_renewal(world, monkeypatch):
    settings, db, campaign_id, drawn, sent = world
    settings = settings.model_copy(update={"heartbeat_seconds": 1e-9})  # renew at every step

    def sample_then_cancelled(generator, prompts, seeds, steps, shift, on_step=None):
        db.write(lambda s: arena.cancel_rendering(s, campaign_id))  # the user stops it
        on_step(1, 1)
        raise AssertionError("the cancelled chunk went on rendering")  # pragma: no cover

    monkeypatch.setattr("srpo.sampling.sample_images", sample_then_cancelled)
    assert rendering.generate_pairs(db, settings, campaign_id) == 0
    assert state(db, campaign_id) == "cancelled" and sent == [] and not drawn
    folder = settings.storage / "campaigns" / str(campaign_id)
    assert not list(folder.rglob("*.png"))  # nothing half-written
