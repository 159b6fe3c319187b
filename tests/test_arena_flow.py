"""The arena on a real (SQLite) database: gold and repeat pairs, the rater's next pair with
"n of N", undo, excluding a rater, labels, rendering progress, and a raw-vote export that
reproduces the results (an independent Bradley-Terry fit written here)."""

from __future__ import annotations

import json
import math
import random
from datetime import timedelta
from types import SimpleNamespace

import pytest
from PIL import Image
from sqlalchemy import func, select

from app.core import arena, arena_next, arena_results, arena_scores, jobs, outputs
from app.core.errors import Conflict, NotFound
from app.core.model_refs import ModelCache
from app.core.models import Campaign, Comparison, RewardPreset, Role, Vote
from app.core.startup import prepare
from app.core.users import create_user
from tests.web_support import stored_checkpoint, tiny_config, web_settings

PROMPTS = ["a red circle", "a blue square"]
SEEDS = [0, 1, 2, 3, 4]
COLOURS = {"base": (200, 30, 30), "mid": (90, 90, 90), "top": (30, 200, 30)}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A rendered campaign of base and two checkpoints (10 cells), and four raters."""
    settings = web_settings(tmp_path_factory.mktemp("arena-flow"))
    db = prepare(settings)
    refs = ["base"]
    for name in ("mid run", "top run"):
        job_id = db.write(lambda s, n=name: jobs.submit(s, settings, tiny_config(), name=n).id)
        refs.append(f"checkpoint:{stored_checkpoint_for(db, settings, job_id)}")
    options = arena.campaign_options(gold_rate=0.1, repeat_rate=0.1)
    campaign_id = db.write(
        lambda s: (
            arena.create_campaign(
                s,
                "flow",
                refs,
                PROMPTS,
                SEEDS,
                ["overall", "realism", "aesthetics"],
                options=options,
            ).id
        )
    )
    folder = settings.storage / "campaigns" / str(campaign_id)
    names = dict(zip(refs, COLOURS, strict=True))
    with db.session() as session:
        found = session.get(Campaign, campaign_id)
        assert arena.rendering_progress(settings.storage, found) == (0, 30)
    images: dict[str, list[int]] = {}
    cells = [(i, p, s) for i, p in enumerate(PROMPTS) for s in SEEDS]
    for ref in refs:
        (folder / names[ref]).mkdir(parents=True)
        images[ref] = []
        for index, prompt, seed in cells:
            path = folder / names[ref] / f"{index}-{seed}.png"
            Image.new("RGB", (16, 16), COLOURS[names[ref]]).save(path)
            images[ref].append(
                db.write(
                    lambda s, p=path, pr=prompt, sd=seed, r=ref: outputs.record_sample(
                        s, settings.storage, p, model=r, prompt=pr, seed=sd, size=(16, 16)
                    )
                )
            )
    with db.session() as session:
        assert arena.rendering_progress(settings.storage, session.get(Campaign, campaign_id)) == (
            30,
            30,
        )
    pairs = db.write(lambda s: arena.store_pairs(s, campaign_id, refs, cells, images))
    again = db.write(lambda s: arena.store_pairs(s, campaign_id, refs, cells, images))
    raters = db.write(
        lambda s: [create_user(s, f"rater{n}", "long enough pw", Role.RATER).id for n in range(4)]
    )
    return SimpleNamespace(
        settings=settings,
        db=db,
        campaign=campaign_id,
        refs=refs,
        pairs=pairs,
        again=again,
        raters=raters,
        cells=cells,
    )


def stored_checkpoint_for(db, settings, job_id: int) -> int:
    """A checkpoint row of ``job_id`` (the helper makes its own job; move it to ours)."""
    _, checkpoint_id, _ = stored_checkpoint(db, settings, step=4)
    from app.core.models import Checkpoint

    def move(session):
        session.get(Checkpoint, checkpoint_id).job_id = job_id

    db.write(move)
    return checkpoint_id


def kinds(world) -> dict[str, list[Comparison]]:
    with world.db.session() as session:
        rows = session.scalars(
            select(Comparison).where(Comparison.campaign_id == world.campaign)
        ).all()
        session.expunge_all()
    out: dict[str, list[Comparison]] = {"pair": [], "gold": [], "repeat": []}
    for row in rows:
        out[arena.pair_kind(row.pair_key)].append(row)
    return out


def test_gold_and_repeat_pairs_are_mixed_in_once(world):
    found = kinds(world)
    # 3 model pairs x 10 cells; gold about 10 % of all pairs shown, repeats 10 % of pairs
    assert world.pairs == world.again == len(found["pair"]) == 30
    assert len(found["gold"]) == round(0.1 * 30 / 0.9) == 3
    assert len(found["repeat"]) == 3
    for gold in found["gold"]:
        assert gold.left_image_id == gold.right_image_id
        assert {gold.left_model, gold.right_model} == {"gold:original", "gold:degraded"}
    originals = {(p.prompt_index, p.seed, p.pair_key): p for p in found["pair"]}
    for repeat in found["repeat"]:
        first = originals[(repeat.prompt_index, repeat.seed, repeat.pair_key.split(":", 1)[1])]
        assert (repeat.left_model, repeat.right_model) == (first.right_model, first.left_model)
        assert repeat.left_image_id == first.right_image_id


def test_models_are_labelled_by_job_name_and_step(world):
    with world.db.session() as session:
        labels = arena.model_labels(session, world.refs)
    assert list(labels.values()) == ["base", "mid run · step 4", "top run · step 4"]


def truth(model: str) -> float:
    return {"base": 0.0, "mid": 0.6, "top": 1.5}[model]


def strength(world, ref: str) -> float:
    return truth(dict(zip(world.refs, COLOURS, strict=True))[ref])


def choose(world, pair: Comparison, seen: list[Comparison], rng: random.Random, style: str):
    """A rater's answer to ``pair`` after ``seen`` (``pair`` last). ``honest`` raters follow
    the strengths (with some ties, both-bad and skips), ``contrary`` ones pick base and the
    degraded image, and ``indifferent`` ones call every ordinary pair a tie."""
    left, right = pair.left_model, pair.right_model
    if style == "contrary":
        return "left" if left in ("gold:degraded", "base") else "right"
    if left.startswith("gold"):
        return "left" if left == "gold:original" else "right"
    if style == "indifferent":
        return "tie"
    p_left = 1 / (1 + math.exp(strength(world, right) - strength(world, left)))
    ordinary = sum(1 for p in seen if not p.left_model.startswith("gold"))
    choice = (None, "tie", "both_bad", "skip", None, None, None)[ordinary % 7]
    return choice or ("left" if rng.random() < p_left else "right")


def rate_everything(world, rater: int, criterion: str, rng: random.Random, style: str):
    """One rater works through the campaign until told to stop; returns the pairs seen, the
    "n of N" before each and the last answer (answers as :func:`choose`)."""
    seen, counts = [], []
    while True:
        with world.db.session() as session:
            nxt = arena_next.next_pair(session, world.campaign, rater, criterion, rng)
            if nxt.pair is None:
                return seen, counts, nxt
            pair = nxt.pair
            session.expunge(pair)
        counts.append((nxt.judged, nxt.total))
        seen.append(pair)
        choice = choose(world, pair, seen, rng, style)
        world.db.write(lambda s, p=pair.id, c=choice: arena.cast_vote(s, rater, p, criterion, c))


def vote_on_every_pair(world, rater: int, criterion: str, rng: random.Random, style: str):
    """One rater votes on every pair of the campaign, originals before their repeats, as a
    client of the API may, whatever pair the active sampling would show next."""
    found = kinds(world)
    seen = []
    for pair in [*found["pair"], *found["gold"], *found["repeat"]]:
        seen.append(pair)
        choice = choose(world, pair, seen, rng, style)
        world.db.write(lambda s, p=pair.id, c=choice: arena.cast_vote(s, rater, p, criterion, c))
    return seen


def test_raters_see_n_of_N_repeats_after_originals_and_a_reason_when_done(world):
    found = kinds(world)
    total = sum(len(v) for v in found.values())
    repeat_of = {
        r.id: next(
            p.id
            for p in found["pair"]
            if (p.prompt_index, p.seed, p.pair_key) == (r.prompt_index, r.seed, r.pair_key[7:])
        )
        for r in found["repeat"]
    }
    # raters who see no difference never settle a comparison: each rates every pair
    for rater in world.raters[:2]:
        seen, counts, done = rate_everything(
            world, rater, "aesthetics", random.Random(rater), "indifferent"
        )
        assert counts == [(k, total) for k in range(len(seen))]
        assert done.reason == "you have judged every pair of this campaign for aesthetics"
        assert (done.judged, done.total) == (total, total)
        order = [p.id for p in seen]
        assert sorted(order) == sorted(p.id for v in found.values() for p in v)
        for repeat, original in repeat_of.items():
            assert order.index(original) < order.index(repeat)
        # gold pairs come mixed in, not all at the end
        golds = [order.index(p.id) for p in found["gold"]]
        assert min(golds) < len(order) - len(golds)


def test_undo_takes_back_only_your_own_recent_vote(world):
    rater = world.raters[0]
    with world.db.session() as session:
        nxt = arena_next.next_pair(session, world.campaign, rater, "realism")
    vote_id = world.db.write(lambda s: arena.cast_vote(s, rater, nxt.pair.id, "realism", "left"))
    with pytest.raises(NotFound):
        world.db.write(lambda s: arena.undo_vote(s, world.raters[1], vote_id))
    later = arena.utcnow() + timedelta(seconds=arena.UNDO_SECONDS + 1)
    with pytest.raises(Conflict, match="too late to undo"):
        world.db.write(lambda s: arena.undo_vote(s, rater, vote_id, now=later))
    pair = world.db.write(lambda s: arena.undo_vote(s, rater, vote_id).id)
    assert pair == nxt.pair.id
    with world.db.session() as session:
        assert session.scalar(select(func.count()).where(Vote.id == vote_id)) == 0
        again = arena_next.next_pair(session, world.campaign, rater, "realism")
    assert again.judged == 0


def mm_bradley_terry(rows: list[dict], anchor: str, prior: float = 1.0) -> dict[str, float]:
    """Hunter's MM iteration for Bradley-Terry, written from the paper: a tie is half a win
    each way, and ``prior`` virtual ties join every two models (as the studio documents)."""
    models = sorted({r[k] for r in rows for k in ("left_model", "right_model")})
    wins = {(i, j): 0.0 for i in models for j in models if i != j}
    for i in models:
        for j in models:
            if i != j:
                wins[(i, j)] += prior / 2
    for row in rows:
        left, right = row["left_model"], row["right_model"]
        credit = {"left": 1.0, "right": 0.0}.get(row["choice"], 0.5)
        wins[(left, right)] += credit
        wins[(right, left)] += 1 - credit
    strength = dict.fromkeys(models, 1.0)
    for _ in range(5000):
        new = {}
        for i in models:
            total = sum(wins[(i, j)] for j in models if j != i)
            games = sum(
                (wins[(i, j)] + wins[(j, i)]) / (strength[i] + strength[j])
                for j in models
                if j != i
            )
            new[i] = total / games
        scale = new[anchor]
        strength = {m: v / scale for m, v in new.items()}
    return {m: math.log(v) for m, v in strength.items()}


def test_the_raw_vote_export_reproduces_the_results_with_and_without_an_excluded_rater(world):
    settings, db = world.settings, world.db
    scores = arena_scores.PairScores(settings, ModelCache(settings))
    preset = RewardPreset(name="warm", positive_words=["photo"], negative_words=["painting"], k=0.0)
    db.write(lambda s: s.add(preset))
    contrary = world.raters[3]
    rng = random.Random(11)
    # every rater votes on every pair: the sides of a pair are drawn at random when it is
    # stored, so which pairs the active sampling would show, and when it would stop, vary
    for rater, style in [(contrary, "contrary")] + [(r, "honest") for r in world.raters[:3]]:
        vote_on_every_pair(world, rater, "overall", rng, style)
    db.write(lambda s: arena.set_excluded(s, world.campaign, contrary, True))
    found = arena_results.results(db, scores, world.campaign, "overall")
    with db.session() as session:
        exported = arena_results.export(session, world.campaign, "jsonl")
    rows = [json.loads(line) for line in exported.splitlines()]
    assert {r["choice"] for r in rows} >= {"left", "right", "tie", "both_bad", "skip"}
    assert {r["kind"] for r in rows} == {"pair", "gold", "repeat"}
    for row in rows:
        assert {"criterion", "prompt", "seed", "rater", "time", "left_label"} <= set(row)
    kept = [
        r
        for r in rows
        if r["kind"] == "pair" and r["choice"] != "skip" and r["criterion"] == "overall"
    ]
    counted = [r for r in kept if not r["excluded"]]
    assert found["votes"] == len(counted)
    independent = mm_bradley_terry(counted, anchor="base")
    shown = {row["model"]: row["score"] for row in found["bradley_terry"]}
    assert shown == pytest.approx(independent, abs=2e-4)
    assert found["all_raters"]["votes"] == len(kept)
    everyone = {row["model"]: row["score"] for row in found["all_raters"]["bradley_terry"]}
    assert everyone == pytest.approx(mm_bradley_terry(kept, anchor="base"), abs=2e-4)
    assert everyone != pytest.approx(shown, abs=1e-3)
    # the intervals and the verdicts come with them
    assert found["bootstrap"]["samples"] >= 4000
    assert all(r["low"] <= r["score"] <= r["high"] for r in found["bradley_terry"])
    assert len(found["verdict"]) == 3 and "top run · step 4" in " ".join(found["verdict"])
    # rater quality: the contrary rater fails every gold pair and is marked excluded
    quality = {r["rater_id"]: r for r in found["raters"]}
    assert quality[contrary]["gold_accuracy"] == 0 and quality[contrary]["excluded"]
    assert quality[world.raters[0]]["gold_accuracy"] == 1.0
    assert quality[world.raters[0]]["consistency"] is not None
    # the default reward's and the preset's agreement with the raters
    assert found["agreement"]["decided"] + found["agreement"]["undecided"] > 0
    assert {r["preset"] for r in found["presets"]} == {"warm"}
    assert {r["words"] for r in found["presets"]} == {"all words", "photo / painting"}
    # the preference view is the counted decided votes only
    with db.session() as session:
        prefs = arena_results.export(session, world.campaign, "jsonl", view="preferences")
    decided = [r for r in counted if r["choice"] in ("left", "right")]
    assert len(prefs.splitlines()) == len(
        [
            r
            for r in rows
            if r["kind"] == "pair" and r["choice"] in ("left", "right") and not r["excluded"]
        ]
    )
    assert decided
    db.write(lambda s: arena.set_excluded(s, world.campaign, contrary, False))
    back = arena_results.results(db, scores, world.campaign, "overall")
    assert back["all_raters"] is None and back["votes"] == len(kept)


def test_sampling_stops_when_the_vote_budget_is_spent(world):
    def options(**changes):
        def work(session):
            found = session.get(Campaign, world.campaign)
            found.options = {**found.options, **changes}

        world.db.write(work)

    def next_for(rater):
        with world.db.session() as session:
            return arena_next.next_pair(session, world.campaign, rater, "realism")

    options(vote_budget=1)
    try:
        rater = world.raters[2]
        while True:  # until an ordinary pair (gold and repeat pairs do not count)
            shown = next_for(rater).pair
            world.db.write(lambda s, p=shown.id: arena.cast_vote(s, rater, p, "realism", "left"))
            if arena.pair_kind(shown.pair_key) == "pair":
                break
        stopped = next_for(world.raters[1])
        assert stopped.pair is None
        assert stopped.reason == (
            "this campaign has enough votes on realism: the vote budget of 1 is spent"
        )
    finally:
        options(vote_budget=None)
    assert next_for(world.raters[1]).pair is not None
