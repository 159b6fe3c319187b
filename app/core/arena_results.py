"""Arena results from stored votes: win rates, Bradley-Terry with intervals and verdicts, rater
quality, human-reward agreement (the default reward and every Reward Lab preset's SRP), export.

The statistics themselves are pure functions in :mod:`app.core.arena_stats`,
:mod:`app.core.arena_sampling` and :mod:`app.core.arena_quality`; this module reads the
votes, maps them to comparisons and scores the pairs' images with the reward.

What the results count: votes on ordinary pairs (not gold or repeat pairs), not skipped, by
raters not excluded from the campaign; a tie or "both bad" is half a win for each side. The
raw-vote export holds every vote with the fields to apply the same rule.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, OrderedDict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core import (
    arena,
    arena_agreement,
    arena_export,
    arena_quality,
    arena_sampling,
    arena_stats,
)
from app.core.arena_quality import RawVote
from app.core.arena_scores import PairScores
from app.core.db import Database
from app.core.errors import NotFound, StudioError
from app.core.models import Campaign, RewardPreset, SampleImage, User

VOTE_FIELDS = (
    "vote_id",
    "time",
    "criterion",
    "choice",
    "kind",
    "left_model",
    "right_model",
    "left_label",
    "right_label",
    "prompt",
    "seed",
    "pair_id",
    "repeats_pair",
    "rater",
    "excluded",
    "left_image",
    "right_image",
)
_FITS: OrderedDict[tuple, arena_stats.Bootstrap] = OrderedDict()
_FITS_LOCK = threading.Lock()
_FITS_KEEP = 64


def campaign(session: Session, campaign_id: int) -> Campaign:
    """The campaign, or :class:`NotFound`."""
    found = session.get(Campaign, campaign_id)
    if found is None:
        raise NotFound(f"campaign {campaign_id} not found")
    return found


def pseudonym(rater_id: int) -> str:
    """A rater as the export names them (no user name leaves the studio)."""
    return f"rater-{rater_id}"


def excluded_raters(found: Campaign) -> list[int]:
    """Ids of the raters whose votes the campaign's results leave out."""
    return [int(r) for r in arena.option(found, "excluded_raters")]


def raw_votes(session: Session, campaign_id: int) -> list[RawVote]:
    """Every vote of the campaign, unblinded, with its pair's kind (raters by pseudonym)."""
    return [_raw(row) for row in arena.vote_rows(session, campaign_id)]


def _raw(row: dict[str, Any]) -> RawVote:
    original = row["original_id"]
    return RawVote(
        rater=pseudonym(row["rater_id"]),
        pair_id=str(row["comparison_id"]),
        kind=row["kind"],
        criterion=row["criterion"],
        choice=row["choice"],
        left_model=row["left_model"],
        right_model=row["right_model"],
        original=None if original is None else str(original),
    )


def _image_paths(session: Session, rows: list[dict[str, Any]]) -> dict[int, str]:
    ids = {r[side] for r in rows for side in ("left_image_id", "right_image_id")}
    found = session.execute(select(SampleImage.id, SampleImage.path).where(SampleImage.id.in_(ids)))
    return dict(found.all())


def comparisons(
    session: Session,
    campaign_id: int,
    criterion: str | None = None,
    excluded: bool = True,
) -> list[arena_stats.Comparison]:
    """The votes the results count, as unblinded comparisons; with ``excluded=False`` the
    excluded raters' votes are counted too."""
    found = campaign(session, campaign_id)
    rows = [r for r in arena.vote_rows(session, campaign_id) if r["kind"] == "pair"]
    if criterion:
        rows = [r for r in rows if r["criterion"] == criterion]
    if excluded:
        left_out = set(excluded_raters(found))
        rows = [r for r in rows if r["rater_id"] not in left_out]
    paths = _image_paths(session, rows)
    out = []
    for row in rows:
        item = arena_stats.comparison_from_vote(
            row["left_model"],
            row["right_model"],
            row["choice"],
            left_image=paths.get(row["left_image_id"]),
            right_image=paths.get(row["right_image_id"]),
            prompt=row["prompt"],
            pair_id=str(row["comparison_id"]),
            criterion=row["criterion"],
            rater=pseudonym(row["rater_id"]),
        )
        if item is not None:
            out.append(item)
    return out


def fit(
    votes: list[arena_stats.Comparison], anchor: str | None, samples: int | None = None
) -> arena_stats.Bootstrap | None:
    """Bradley-Terry with bootstrap intervals (``samples=None``: enough resamples for ends
    stable to 0.01), kept per distinct set of outcomes; ``None`` without two models."""
    outcomes = Counter((c.model_a, c.model_b, c.outcome) for c in votes)
    if len({m for a, b, _ in outcomes for m in (a, b)}) < 2:
        return None
    models = {m for a, b, _ in outcomes for m in (a, b)}
    anchor = anchor if anchor in models else None
    key = (anchor, samples, tuple(sorted(outcomes.items())))
    with _FITS_LOCK:
        if key in _FITS:
            _FITS.move_to_end(key)
            return _FITS[key]
    found = arena_stats.bradley_terry_bootstrap(votes, anchor=anchor, samples=samples)
    with _FITS_LOCK:
        _FITS[key] = found
        while len(_FITS) > _FITS_KEEP:
            _FITS.popitem(last=False)
    return found


def _clean(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 4)


def _agreement(found: arena_agreement.Agreement) -> dict[str, Any]:
    return {
        "agree": found.agree,
        "decided": found.decided,
        "undecided": found.undecided,
        "rate": _clean(found.rate),
        "low": _clean(found.low),
        "high": _clean(found.high),
    }


def preset_agreement(
    votes: list[arena_stats.Comparison], scores: dict[str, dict[str, dict[str, dict[str, float]]]]
) -> list[dict[str, Any]]:
    """Agreement of each preset's SRP (and each of its control-word pairs) with the raters,
    best first.

    ``scores[preset][name][pair id][model]`` with ``name`` ``srp`` (the preset as trained
    with) or ``"pos / neg"``. Best: the highest agreement rate, then the most decided pairs.
    """
    rows = []
    for preset, named in scores.items():
        for name, by_pair in named.items():
            found = arena_agreement.human_reward_agreement(votes, by_pair)
            words = "all words" if name == "srp" else name
            rows.append({"preset": preset, "words": words, **_agreement(found)})
    rows.sort(key=lambda r: (-(r["rate"] if r["rate"] is not None else -1), -r["decided"]))
    return rows


def _bt_rows(found: arena_stats.Bootstrap | None, labels: dict[str, str]) -> list[dict]:
    if found is None:
        return []
    return [
        {
            "model": s.model,
            "label": labels.get(s.model, s.model),
            "score": _clean(s.score),
            "low": _clean(s.low),
            "high": _clean(s.high),
        }
        for s in found.scores.values()
    ]


def _quality(
    session: Session, votes: list[RawVote], excluded: list[int], criterion: str
) -> list[dict]:
    ids = {int(v.rater.removeprefix("rater-")) for v in votes}
    names = dict(session.execute(select(User.id, User.username).where(User.id.in_(ids))).all())
    rows = []
    chosen = [v for v in votes if v.criterion == criterion]
    for rater, q in arena_quality.rater_quality(chosen).items():
        rater_id = int(rater.removeprefix("rater-"))
        rows.append(
            {
                "rater_id": rater_id,
                "rater": names.get(rater_id, rater),
                "votes": q.votes,
                "gold": q.gold,
                "gold_accuracy": _clean(q.gold_accuracy),
                "repeats": q.repeats,
                "consistency": _clean(q.consistency),
                "majority": q.majority,
                "majority_agreement": _clean(q.majority_agreement),
                "excluded": rater_id in excluded,
            }
        )
    return rows


def sampling_fit(
    session: Session, found: Campaign, criterion: str
) -> tuple[list[arena_stats.Comparison], arena_stats.Bootstrap | None, str | None]:
    """The counted votes on ``criterion``, their fit and why sampling is over (or None).

    The fit for choosing pairs uses a fixed number of resamples; once it calls every
    comparison decided, the full fit of the results must agree before sampling stops.
    """
    votes = comparisons(session, found.id, criterion)
    anchor = "base" if "base" in found.models else None
    budget = arena.option(found, "vote_budget")
    quick = fit(votes, anchor, samples=arena_stats.BOOTSTRAP_START)
    reason = arena_sampling.stop_reason(quick, found.models, len(votes), budget)
    if reason is not None and quick is not None and (budget is None or len(votes) < budget):
        reason = arena_sampling.stop_reason(fit(votes, anchor), found.models, len(votes), budget)
    return votes, quick, reason


def results(
    db: Database, scores: PairScores, campaign_id: int, criterion: str | None = None
) -> dict[str, Any]:
    """A campaign's results on one criterion (default: its first).

    Win rates with Wilson intervals; Bradley-Terry scores and score differences with bootstrap
    intervals (``bootstrap`` says how many resamples) and a verdict per model pair; the same
    with every rater when some are excluded (``all_raters``); per-rater quality; whether
    sampling is over; how often the default reward, and each Reward Lab preset's SRP, picks
    the raters' winner.
    """
    with db.session() as session:
        found = campaign(session, campaign_id)
        criterion = criterion or found.criteria[0]
        if criterion not in found.criteria:
            raise StudioError(f"criterion: one of {', '.join(found.criteria)}")
        votes, _, stopped = sampling_fit(session, found, criterion)
        excluded = excluded_raters(found)
        everyone = comparisons(session, campaign_id, criterion, excluded=False)
        raw = raw_votes(session, campaign_id)
        labels = arena.model_labels(session, list(found.models))
        raters = _quality(session, raw, excluded, criterion)
        pair_ids = {int(c.pair_id) for c in votes}
        plain = scores.of_pairs(session, pair_ids)["r(p)"] if votes else {}
        presets = session.scalars(select(RewardPreset).order_by(RewardPreset.name)).all()
        by_preset = (
            {p.name: scores.of_pairs(session, pair_ids, p) for p in presets} if votes else {}
        )
        name, models = found.name, list(found.models)
        budget = arena.option(found, "vote_budget")
    anchor = "base" if "base" in models else None
    fitted = fit(votes, anchor)
    table = [
        {
            "model": model,
            "label": labels.get(model, model),
            "wins": rate.wins,
            "losses": rate.losses,
            "ties": rate.ties,
            "win_rate": _clean(rate.rate),
            "wilson_low": _clean(rate.low),
            "wilson_high": _clean(rate.high),
        }
        for model, rate in arena_stats.win_rates(votes).items()
    ]
    out: dict[str, Any] = {
        "campaign": name,
        "models": models,
        "labels": labels,
        "criterion": criterion,
        "votes": len(votes),
        "any_votes": bool(raw),
        "win_rates": table,
        "bradley_terry": _bt_rows(fitted, labels),
        "bootstrap": None
        if fitted is None
        else {"samples": fitted.samples, "precision": round(fitted.precision, 5)},
        "differences": []
        if fitted is None
        else [
            {
                "a": d.a,
                "b": d.b,
                "score": _clean(d.score),
                "low": _clean(d.low),
                "high": _clean(d.high),
                "decided": d.decided,
                "winner": d.winner,
            }
            for d in fitted.differences.values()
        ],
        "verdict": arena_sampling.verdicts(fitted, models, criterion, labels),
        "sampling": {"stopped": stopped, "vote_budget": budget},
        "excluded_raters": excluded,
        "all_raters": None,
        "raters": raters,
        "agreement": _agreement(arena_agreement.human_reward_agreement(votes, plain))
        if votes
        else None,
        "presets": preset_agreement(votes, by_preset) if votes else [],
    }
    if len(everyone) != len(votes):
        every_fit = fit(everyone, anchor)
        out["all_raters"] = {
            "votes": len(everyone),
            "bradley_terry": _bt_rows(every_fit, labels),
            "verdict": arena_sampling.verdicts(every_fit, models, criterion, labels),
        }
    return out


def vote_export_rows(session: Session, campaign_id: int) -> list[dict[str, Any]]:
    """Every vote of the campaign as one row of :data:`VOTE_FIELDS` (skips, ties, gold and
    repeat pairs, excluded raters included and marked)."""
    found = campaign(session, campaign_id)
    rows = arena.vote_rows(session, campaign_id)
    refs = sorted({r[side] for r in rows for side in ("left_model", "right_model")})
    labels = arena.model_labels(session, refs)
    paths = _image_paths(session, rows)
    left_out = set(excluded_raters(found))
    return [
        {
            "vote_id": r["vote_id"],
            "time": r["created_at"],
            "criterion": r["criterion"],
            "choice": r["choice"],
            "kind": r["kind"],
            "left_model": r["left_model"],
            "right_model": r["right_model"],
            "left_label": labels[r["left_model"]],
            "right_label": labels[r["right_model"]],
            "prompt": r["prompt"],
            "seed": r["seed"],
            "pair_id": r["comparison_id"],
            "repeats_pair": r["original_id"],
            "rater": pseudonym(r["rater_id"]),
            "excluded": r["rater_id"] in left_out,
            "left_image": paths.get(r["left_image_id"]),
            "right_image": paths.get(r["right_image_id"]),
        }
        for r in rows
    ]


def export(session: Session, campaign_id: int, fmt: str, view: str = "votes") -> str:
    """The campaign's raw votes (``view="votes"``) or preference pairs (``"preferences"``,
    the counted decided votes) as ``jsonl`` or ``csv``."""
    if fmt not in ("jsonl", "csv"):
        raise StudioError("format: jsonl or csv")
    if view == "votes":
        rows = vote_export_rows(session, campaign_id)
        fields = VOTE_FIELDS
    elif view == "preferences":
        rows = arena_export.preference_rows(comparisons(session, campaign_id))
        fields = arena_export.PREFERENCE_FIELDS
    else:
        raise StudioError("view: votes or preferences")
    return arena_export.to_jsonl(rows) if fmt == "jsonl" else arena_export.to_csv(rows, fields)


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


def forest(db: Database, campaign_id: int) -> dict[str, Any]:
    """Bradley-Terry scores with intervals of every model on every criterion, and the verdicts,
    as a forest plot shows them.

    ``rows``: ``{criterion, model, label, score, low, high, raters}`` where ``raters`` is
    ``counted`` (the results' votes) or, only when some raters are excluded, ``all``;
    ``verdicts``: per criterion, the sentences of :func:`arena_sampling.verdicts` on the
    counted votes.
    """
    with db.session() as session:
        found = campaign(session, campaign_id)
        models, criteria = list(found.models), list(found.criteria)
        labels = arena.model_labels(session, models)
        anchor = "base" if "base" in models else None
        some_excluded = bool(excluded_raters(found))
        votes = {
            (criterion, who): comparisons(
                session, campaign_id, criterion, excluded=who == "counted"
            )
            for criterion in criteria
            for who in (("counted", "all") if some_excluded else ("counted",))
        }
    rows, verdict = [], {}
    for (criterion, who), counted in votes.items():
        fitted = fit(counted, anchor)
        rows += [{"criterion": criterion, "raters": who, **r} for r in _bt_rows(fitted, labels)]
        if who == "counted":
            verdict[criterion] = arena_sampling.verdicts(fitted, models, criterion, labels)
    return {"labels": labels, "rows": rows, "verdicts": verdict}
