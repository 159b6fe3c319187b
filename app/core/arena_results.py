"""Arena results from stored votes: win rates, Bradley-Terry, human-reward agreement, export.

The statistics themselves are pure functions in :mod:`app.core.arena_stats`; this module
reads the votes, maps them to comparisons and scores the pairs' images with the reward.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core import arena_stats
from app.core.db import Database
from app.core.errors import NotFound, StudioError
from app.core.model_refs import ModelCache
from app.core.models import Campaign, Comparison, SampleImage, User, Vote
from app.core.settings import Settings
from app.core.storage import resolve

BOOTSTRAP_SAMPLES = 300


def campaign(session: Session, campaign_id: int) -> Campaign:
    """The campaign, or :class:`NotFound`."""
    found = session.get(Campaign, campaign_id)
    if found is None:
        raise NotFound(f"campaign {campaign_id} not found")
    return found


def comparisons(
    session: Session, campaign_id: int, criterion: str | None = None
) -> list[arena_stats.Comparison]:
    """The campaign's votes as unblinded comparisons (skips left out)."""
    campaign(session, campaign_id)
    query = (
        select(Vote, Comparison, User.username)
        .join(Comparison, Vote.comparison_id == Comparison.id)
        .join(User, Vote.rater_id == User.id)
        .where(Comparison.campaign_id == campaign_id)
        .order_by(Vote.id)
    )
    if criterion:
        query = query.where(Vote.criterion == criterion)
    pairs = select(Comparison.left_image_id, Comparison.right_image_id).where(
        Comparison.campaign_id == campaign_id
    )
    ids = {i for row in session.execute(pairs).all() for i in row}
    paths = dict(
        session.execute(
            select(SampleImage.id, SampleImage.path).where(SampleImage.id.in_(ids))
        ).all()
    )
    found = []
    for vote, pair, rater in session.execute(query).all():
        item = arena_stats.comparison_from_vote(
            pair.left_model,
            pair.right_model,
            vote.choice.value,
            left_image=paths.get(pair.left_image_id),
            right_image=paths.get(pair.right_image_id),
            prompt=pair.prompt,
            pair_id=str(pair.id),
            criterion=vote.criterion,
            rater=rater,
        )
        if item is not None:
            found.append(item)
    return found


class PairScores:
    """The plain reward r(prompt) of both images of arena pairs, computed once per image.

    The reward is the studio's default reward from the :class:`ModelCache`, scored under its
    lock; scores are kept by image id for the life of the process.
    """

    def __init__(self, settings: Settings, models: ModelCache) -> None:
        self.settings, self.models = settings, models
        self.cache: dict[int, float] = {}

    def of_pairs(self, session: Session, pair_ids: set[int]) -> dict[str, dict[str, float]]:
        """``{pair id: {model: reward}}`` for the given pairs."""
        import numpy as np
        import torch
        from PIL import Image

        pairs = session.scalars(select(Comparison).where(Comparison.id.in_(pair_ids))).all()
        wanted = {i for p in pairs for i in (p.left_image_id, p.right_image_id)}
        missing = sorted(wanted - set(self.cache))
        if missing:
            images = session.scalars(select(SampleImage).where(SampleImage.id.in_(missing))).all()
            reward = self.models.reward()
            with self.models.lock, torch.no_grad():
                for image in images:
                    path = resolve(self.settings.storage, image.path)
                    with Image.open(path) as picture:
                        array = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255
                    batch = torch.from_numpy(array).permute(2, 0, 1)[None]
                    self.cache[image.id] = float(reward.score(batch, [image.prompt])[0])
        return {
            str(p.id): {
                p.left_model: self.cache[p.left_image_id],
                p.right_model: self.cache[p.right_image_id],
            }
            for p in pairs
        }


def _clean(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def results(
    db: Database, scores: PairScores, campaign_id: int, criterion: str | None = None
) -> dict[str, Any]:
    """Win rates with Wilson intervals, Bradley-Terry scores with bootstrap intervals, and
    the share of decided pairs where the reward picks the raters' winner."""
    with db.session() as session:
        found = campaign(session, campaign_id)
        criterion = criterion or found.criteria[0]
        if criterion not in found.criteria:
            raise StudioError(f"criterion: one of {', '.join(found.criteria)}")
        votes = comparisons(session, campaign_id, criterion)
        total = session.scalar(
            select(Vote.id)
            .join(Comparison, Vote.comparison_id == Comparison.id)
            .where(Comparison.campaign_id == campaign_id)
            .limit(1)
        )
        rewards = scores.of_pairs(session, {int(c.pair_id) for c in votes}) if votes else {}
        name, models = found.name, list(found.models)
    rates = arena_stats.win_rates(votes)
    table = [
        {
            "model": model,
            "wins": rate.wins,
            "losses": rate.losses,
            "ties": rate.ties,
            "win_rate": _clean(rate.rate),
            "wilson_low": _clean(rate.low),
            "wilson_high": _clean(rate.high),
        }
        for model, rate in rates.items()
    ]
    bt = []
    if len(rates) >= 2:
        anchor = "base" if "base" in rates else None
        fitted = arena_stats.bradley_terry_bootstrap(
            votes, anchor=anchor, samples=BOOTSTRAP_SAMPLES
        )
        bt = [
            {
                "model": s.model,
                "score": _clean(s.score),
                "low": _clean(s.low),
                "high": _clean(s.high),
            }
            for s in fitted.values()
        ]
    agreement = arena_stats.human_reward_agreement(votes, rewards) if votes else None
    return {
        "campaign": name,
        "models": models,
        "criterion": criterion,
        "votes": len(votes),
        "any_votes": total is not None,
        "win_rates": table,
        "bradley_terry": bt,
        "agreement": None
        if agreement is None
        else {
            "agree": agreement.agree,
            "decided": agreement.decided,
            "undecided": agreement.undecided,
            "rate": _clean(agreement.rate),
            "low": _clean(agreement.low),
            "high": _clean(agreement.high),
        },
    }


def export(session: Session, campaign_id: int, fmt: str) -> str:
    """The campaign's decided votes as a preference dataset (``jsonl`` or ``csv``)."""
    if fmt not in ("jsonl", "csv"):
        raise StudioError("format: jsonl or csv")
    rows = arena_stats.preference_rows(comparisons(session, campaign_id))
    return arena_stats.to_jsonl(rows) if fmt == "jsonl" else arena_stats.to_csv(rows)


def checkpoint_arena(session: Session, checkpoint_id: int) -> list[dict[str, Any]]:
    """The checkpoint's win rate in every campaign and criterion that has votes on it."""
    ref = f"checkpoint:{checkpoint_id}"
    entries = []
    for found in session.scalars(select(Campaign).order_by(Campaign.id)):
        if ref not in found.models:
            continue
        for criterion in found.criteria:
            rate = arena_stats.win_rates(comparisons(session, found.id, criterion)).get(ref)
            if rate is not None:
                entries.append(
                    {
                        "campaign": found.name,
                        "criterion": criterion,
                        "rate": rate.rate,
                        "low": rate.low,
                        "high": rate.high,
                        "n": rate.wins + rate.losses + rate.ties,
                    }
                )
    return entries
