"""Votes on PostgreSQL: 1000 votes from 50 concurrent raters, one per rater, pair and criterion."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import func, select

from app.core import arena
from app.core.errors import Conflict, Forbidden, NotFound, StudioError
from app.core.models import Campaign, CampaignState, Comparison, Role, SampleImage, User, Vote
from app.core.startup import prepare
from app.core.users import hash_password
from tests.integration.conftest import RUN, distributed_settings

RATERS, PAIRS = 50, 20


def _campaign(session, tag: str, pairs: int) -> tuple[int, list[int]]:
    """A ready campaign with ``pairs`` blind pairs over stored image rows."""
    campaign = Campaign(
        name=f"votes-{tag}",
        models=["base", "checkpoint:1"],
        prompts=["a red circle"],
        seeds=list(range(pairs)),
        criteria=["overall", "realism"],
        state=CampaignState.READY,
    )
    session.add(campaign)
    session.flush()
    ids = []
    for seed in range(pairs):
        images = [
            SampleImage(
                model=model,
                prompt="a red circle",
                seed=seed,
                path=f"{tag}/{model}-{seed}.png",
                width=64,
                height=64,
            )
            for model in ("base", "checkpoint:1")
        ]
        session.add_all(images)
        session.flush()
        pair = Comparison(
            campaign_id=campaign.id,
            prompt_index=0,
            prompt="a red circle",
            seed=seed,
            pair_key="base|checkpoint:1",
            left_model="base",
            right_model="checkpoint:1",
            left_image_id=images[0].id,
            right_image_id=images[1].id,
        )
        session.add(pair)
        session.flush()
        ids.append(pair.id)
    return campaign.id, ids


def test_1000_votes_from_50_concurrent_raters(tmp_path, postgres_url) -> None:
    settings = distributed_settings(tmp_path, postgres_url, "redis://127.0.0.1:6379/11")
    db = prepare(settings)
    secret = hash_password("rater password")

    def setup(session):
        raters = [
            User(username=f"r{i}-{RUN}", password_hash=secret, role=Role.RATER)
            for i in range(RATERS)
        ]
        session.add_all(raters)
        session.flush()
        return [r.id for r in raters], _campaign(session, RUN, PAIRS)

    rater_ids, (campaign_id, pair_ids) = db.write(setup)
    barrier = threading.Barrier(RATERS)
    outcomes: Counter[str] = Counter()
    errors: list[BaseException] = []

    def rate(rater_id: int) -> None:
        barrier.wait()
        choices = ["left", "right", "tie", "both_bad", "skip"]
        for n, pair_id in enumerate(pair_ids):
            for attempt in range(2 if n % 10 == 0 else 1):  # some double clicks
                try:
                    db.write(
                        lambda s, p=pair_id, c=choices[(n + rater_id) % 5]: arena.cast_vote(
                            s, rater_id, p, "overall", c
                        )
                    )
                    outcomes["stored"] += 1
                except Conflict:
                    outcomes[f"duplicate refused (attempt {attempt})"] += 1
                except BaseException as error:  # anything else fails the test below
                    errors.append(error)

    threads = [threading.Thread(target=rate, args=(r,)) for r in rater_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert outcomes == {"stored": 1000, "duplicate refused (attempt 1)": RATERS * 2}
    with db.session() as session:
        votes = session.execute(
            select(Vote.comparison_id, Vote.rater_id, Vote.criterion).where(
                Vote.comparison_id.in_(pair_ids)
            )
        ).all()
        assert len(votes) == 1000 and len(set(votes)) == 1000
        assert len(arena.vote_rows(session, campaign_id)) == 1000


def test_bad_votes_are_refused_with_a_reason(tmp_path, postgres_url) -> None:
    settings = distributed_settings(tmp_path, postgres_url, "redis://127.0.0.1:6379/11")
    db = prepare(settings)
    tag = f"bad-{RUN}"

    def setup(session):
        rater = User(username=f"bad-{RUN}", password_hash="x", role=Role.RATER)
        session.add(rater)
        session.flush()
        return rater.id, _campaign(session, tag, 1)

    rater_id, (campaign_id, (pair_id,)) = db.write(setup)

    def vote(pair: int, criterion: str, choice: str):
        return lambda s: arena.cast_vote(s, rater_id, pair, criterion, choice)

    with pytest.raises(StudioError, match="choice: one of left, right"):
        db.write(vote(pair_id, "overall", "up"))
    with pytest.raises(StudioError, match="criterion: one of overall, realism"):
        db.write(vote(pair_id, "smell", "left"))
    with pytest.raises(NotFound):
        db.write(vote(10**9, "overall", "left"))
    db.write(vote(pair_id, "realism", "tie"))
    with pytest.raises(Conflict):
        db.write(vote(pair_id, "realism", "left"))
    with db.session() as session:
        stored = session.scalars(select(Vote).where(Vote.comparison_id == pair_id)).all()
        assert [(v.criterion, v.choice.value) for v in stored] == [("realism", "tie")]
        session.get(Campaign, campaign_id).state = CampaignState.PENDING
    with pytest.raises(Conflict, match="not open"):
        db.write(vote(pair_id, "overall", "left"))
    with db.session() as session:
        session.get(Campaign, campaign_id).state = CampaignState.READY
        session.get(User, rater_id).active = False
    with pytest.raises(Forbidden, match="disabled"):
        db.write(vote(pair_id, "overall", "left"))
    with db.session() as session:
        count = session.scalar(select(func.count()).where(Vote.comparison_id == pair_id))
        assert count == 1


def test_campaign_input_is_validated(tmp_path, postgres_url) -> None:
    settings = distributed_settings(tmp_path, postgres_url, "redis://127.0.0.1:6379/11")
    db = prepare(settings)
    cases = [
        (["base"], ["p"], [0], ["overall"], "at least two"),
        (["base", "checkpoint:999999"], ["p"], [0], ["overall"], "no such checkpoint"),
        (["base", "sdxl"], ["p"], [0], ["overall"], "use 'base' or 'checkpoint:ID'"),
        (["base", "base"], ["p"], [0], ["overall"], "at least two different"),
        (["base", "checkpoint:1"], [" "], [0], ["overall"], "non-empty prompts"),
        (["base", "checkpoint:1"], ["p"], [-1], ["overall"], "seeds"),
        (["base", "checkpoint:1"], ["p"], [0], ["vibes"], "criteria"),
    ]
    for models, prompts, seeds, criteria, message in cases:
        with pytest.raises(StudioError, match=message):
            db.write(
                lambda s, a=(models, prompts, seeds, criteria): arena.create_campaign(s, "c", *a)
            )
    assert db.write(lambda s: s.scalar(select(func.count()).where(Campaign.name == "c"))) == 0
