"""The Arena's results as people read them: a forest plot of Bradley-Terry scores with the
verdicts beside it, tables that name models "job name · step N", rater quality with exclusion
(admins only; the results then show with and without the excluded raters), each Reward Lab
preset's agreement with the raters, and the export (raw votes or preference pairs).

Handlers: :func:`show_results`, :func:`exclude` and :func:`export`; :func:`forest_image`
draws the plot. The numbers are the core's (:mod:`app.core.arena_results`).
"""

import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from app.core import arena, arena_export, arena_results
from app.core.errors import StudioError
from app.core.models import Role
from app.web.context import Studio
from app.web.ui.common import bind, caller, friendly, ident, text

RATE_COLUMNS = ["model", "wins", "losses", "ties", "win rate", "low", "high"]
SCORE_COLUMNS = ["model", "score", "low", "high"]
RATER_COLUMNS = ["rater", "votes", "gold accuracy", "consistency", "majority agreement", "status"]
PRESET_COLUMNS = ["preset", "words", "agreement", "interval", "decided pairs"]
VIEWS = [("Raw votes (every vote)", "votes"), ("Preference pairs (decided votes)", "preferences")]
COUNTED, EVERYONE = "#1f5fbf", "#9a9a9a"


def forest_image(
    rows: Sequence[Mapping[str, Any]], criteria: Sequence[str], models: Sequence[str]
) -> Image.Image | None:
    """A forest plot: per criterion one panel, per model its score as a dot and its 95 %
    interval as a bar (the counted raters in blue; every rater, when some are excluded, as a
    hollow grey dot below), with a dashed line at 0 (the base model).

    ``rows`` as :func:`app.core.arena_results.forest` returns them; ``models`` are labels in
    the order to show. ``None`` when there is nothing to plot yet. Drawn with Pillow, so the
    studio needs no plotting library.
    """
    points = [r for r in rows if r["score"] is not None and r["label"] in models and r["criterion"]]
    shown = [c for c in criteria if any(p["criterion"] == c for p in points)]
    if not shown:
        return None
    font = ImageFont.load_default(size=14)
    small = ImageFont.load_default(size=12)
    ends = [v for p in points for v in (p["score"], p["low"], p["high"]) if v is not None]
    lo, hi = min([*ends, 0.0]), max([*ends, 0.0])
    pad = max(0.1, (hi - lo) * 0.08)
    lo, hi = lo - pad, hi + pad
    label_width = 12 + max(int(font.getlength(m)) for m in models)
    width, right = max(720, label_width + 420), 24
    row, title = 30, 26
    height = 16 + sum(title + row * len(models) for _ in shown) + 56
    picture = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(picture)

    def x(value: float) -> float:
        return label_width + (value - lo) / (hi - lo) * (width - label_width - right)

    top = 16
    for criterion in shown:
        draw.text((8, top), criterion.replace("_", " "), fill="black", font=font)
        top += title
        bottom = top + row * len(models)
        draw.line([(x(0), top - 4), (x(0), bottom)], fill="#666666", width=1)
        for index, model in enumerate(models):
            middle = top + row * index + row // 2
            draw.text((8, middle - 8), model, fill="#222222", font=font)
            for who, offset, colour, face in (
                ("counted", -4, COUNTED, COUNTED),
                ("all", 6, EVERYONE, "white"),
            ):
                found = [
                    p
                    for p in points
                    if p["criterion"] == criterion and p["label"] == model and p["raters"] == who
                ]
                if not found:
                    continue
                p = found[0]
                y = middle + (offset if any(q["raters"] == "all" for q in points) else 0)
                low = p["low"] if p["low"] is not None else p["score"]
                high = p["high"] if p["high"] is not None else p["score"]
                draw.line([(x(low), y), (x(high), y)], fill=colour, width=2)
                for end in (low, high):
                    draw.line([(x(end), y - 4), (x(end), y + 4)], fill=colour, width=2)
                dot = x(p["score"])
                draw.ellipse([dot - 5, y - 5, dot + 5, y + 5], fill=face, outline=colour, width=2)
        top = bottom
    axis = top + 6
    draw.line([(label_width, axis), (width - right, axis)], fill="black", width=1)
    for tick in _ticks(lo, hi):
        draw.line([(x(tick), axis), (x(tick), axis + 4)], fill="black", width=1)
        mark = f"{tick:g}"
        draw.text((x(tick) - small.getlength(mark) / 2, axis + 6), mark, fill="black", font=small)
    legend = "score (0 = base) with 95 % bootstrap interval · blue: counted raters"
    if any(p["raters"] == "all" for p in points):
        legend += " · hollow grey: every rater"
    draw.text((label_width, axis + 24), legend, fill="#444444", font=small)
    return picture


def _ticks(lo: float, hi: float) -> list[float]:
    """About five round tick values between ``lo`` and ``hi``."""
    raw = (hi - lo) / 5
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if raw <= step * m)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step) + 1)]


def _rate(value: float | None, n: int | None = None) -> str:
    if value is None:
        return "–"
    return f"{value:.0%}" if n is None else f"{value:.0%} of {n}"


def _interval(low: float | None, high: float | None) -> str:
    return "–" if low is None or high is None else f"[{low:.2f}, {high:.2f}]"


def _verdicts(found: Mapping[str, list[str]]) -> str:
    """The forest's verdicts in plain words, one bullet per model pair and criterion."""
    parts = ["**Verdict** (counted raters)"]
    for criterion, sentences in found.items():
        bullets = "\n".join(f"- {text(line)}" for line in sentences)
        parts.append(f"*{text(criterion)}*\n\n{bullets}")
    return "\n\n".join(parts)


def _summary(found: Mapping[str, Any]) -> str:
    agreement = found["agreement"]
    agree = (
        "no decided pairs yet"
        if not agreement or not agreement["decided"]
        else f"{agreement['rate']:.0%} of {agreement['decided']} decided pairs "
        f"{_interval(agreement['low'], agreement['high'])}"
    )
    boot = found["bootstrap"]
    resamples = "" if boot is None else f" · intervals from {boot['samples']} bootstrap resamples"
    stopped = found["sampling"]["stopped"]
    sampling = f" · sampling over: {text(stopped)}" if stopped else ""
    return (
        f"**{text(found['campaign'])}** · {text(found['criterion'])} · {found['votes']} "
        f"counted votes{resamples} · human-reward agreement: {agree}{sampling}"
    )


def _everyone(found: Mapping[str, Any]) -> str:
    """The results with every rater, when some are excluded."""
    if found["all_raters"] is None:
        return ""
    left_out = ", ".join(
        text(r["rater"]) for r in found["raters"] if r["rater_id"] in found["excluded_raters"]
    )
    every = found["all_raters"]
    sentences = "\n".join(f"- {text(line)}" for line in every["verdict"])
    return (
        f"**With every rater** ({every['votes']} votes, counting the excluded "
        f"{left_out or 'raters'} too):\n\n{sentences}"
    )


def _tables(found: Mapping[str, Any]) -> tuple[pd.DataFrame, ...]:
    rates = pd.DataFrame(
        [
            [
                r["label"],
                r["wins"],
                r["losses"],
                r["ties"],
                _rate(r["win_rate"]),
                r["wilson_low"],
                r["wilson_high"],
            ]
            for r in found["win_rates"]
        ],
        columns=RATE_COLUMNS,
    )
    scores = pd.DataFrame(
        [[r["label"], r["score"], r["low"], r["high"]] for r in found["bradley_terry"]],
        columns=SCORE_COLUMNS,
    )
    raters = pd.DataFrame(
        [
            [
                r["rater"],
                r["votes"],
                _rate(r["gold_accuracy"], r["gold"]),
                _rate(r["consistency"], r["repeats"]),
                _rate(r["majority_agreement"], r["majority"]),
                "excluded" if r["excluded"] else "counted",
            ]
            for r in found["raters"]
        ],
        columns=RATER_COLUMNS,
    )
    presets = pd.DataFrame(
        [
            [
                p["preset"],
                p["words"],
                _rate(p["rate"]),
                _interval(p["low"], p["high"]),
                p["decided"],
            ]
            for p in found["presets"]
        ],
        columns=PRESET_COLUMNS,
    )
    return rates, scores, raters, presets


@friendly
def show_results(studio: Studio, campaign_id, chosen, request: gr.Request):
    """The campaign's results on ``chosen``: summary, forest plot of every criterion with the
    verdicts, win rates, scores, the results with every rater (when some are excluded), rater
    quality (and the raters to pick for exclusion) and each preset's agreement."""
    caller(studio, request, Role.TRAINER)
    if campaign_id is None:
        raise StudioError("choose a campaign")
    chosen_id = ident(campaign_id, "campaign")
    found = arena_results.results(studio.db, studio.pair_scores, chosen_id, chosen)
    forest = arena_results.forest(studio.db, chosen_id)
    labels = [found["labels"][m] for m in found["models"]]
    with studio.db.session() as session:
        criteria = list(arena_results.campaign(session, chosen_id).criteria)
    picture = forest_image(forest["rows"], criteria, labels)
    rates, scores, raters, presets = _tables(found)
    rater_choices = [
        (f"{r['rater']} (rater-{r['rater_id']})", r["rater_id"]) for r in found["raters"]
    ]
    return (
        _summary(found),
        picture,
        _verdicts(forest["verdicts"]),
        rates,
        scores,
        _everyone(found),
        raters,
        gr.update(choices=rater_choices, value=None),
        presets,
    )


@friendly
def exclude(studio: Studio, excluded: bool, campaign_id, rater, chosen, request: gr.Request):
    """Leave a rater's votes out of the campaign's results (admins only), or count them again;
    then show the results anew."""
    caller(studio, request, Role.ADMIN)
    if campaign_id is None:
        raise StudioError("choose a campaign")
    if rater is None:
        raise StudioError("rater: choose one from the rater-quality list")
    chosen_id, rater_id = ident(campaign_id, "campaign"), ident(rater, "rater")
    studio.db.write(lambda s: arena.set_excluded(s, chosen_id, rater_id, excluded))
    return show_results(studio, campaign_id, chosen, request)


@friendly
def export(studio: Studio, fmt: str, campaign_id, view, request: gr.Request):
    """The campaign's raw votes or preference pairs as a ``jsonl`` or ``csv`` file to download,
    named after the campaign and the view."""
    caller(studio, request, Role.TRAINER)
    if campaign_id is None:
        raise StudioError("choose a campaign")
    if view not in arena_export.EXPORT_VIEWS:
        raise StudioError("export: choose raw votes or preference pairs")
    chosen_id = ident(campaign_id, "campaign")
    with studio.db.session() as session:
        name = arena_results.campaign(session, chosen_id).name
        data = arena_results.export(session, chosen_id, fmt, view=view)
    path = Path(tempfile.mkdtemp(prefix="srpo-export-")) / arena_export.export_name(
        chosen_id, name, view, fmt
    )
    path.write_text(data, encoding="utf-8")
    return str(path)


def build_results(studio: Studio, campaign: gr.Dropdown) -> None:
    """Lay out the results of the campaign chosen in ``campaign`` and wire their events."""
    with gr.Row():
        criterion = gr.Dropdown(
            list(arena.CRITERIA), value="overall", label="Criterion", allow_custom_value=False
        )
        show = gr.Button("Show results")
    summary = gr.Markdown()
    with gr.Row():
        with gr.Column(scale=3):
            plot = gr.Image(
                label="Bradley-Terry scores per model and criterion (forest plot)",
                type="pil",
                interactive=False,
                format="png",
                elem_classes=["forest-plot"],
            )
        with gr.Column(scale=2):
            verdict = gr.Markdown(elem_classes=["verdict"])
    rates = gr.Dataframe(
        headers=RATE_COLUMNS,
        label="Win rates (Wilson 95% intervals, ties count half)",
        interactive=False,
    )
    scores = gr.Dataframe(
        headers=SCORE_COLUMNS,
        label="Bradley-Terry scores (bootstrap 95% intervals; base = 0)",
        interactive=False,
    )
    everyone = gr.Markdown()
    raters = gr.Dataframe(
        headers=RATER_COLUMNS,
        label="Rater quality (gold pairs, repeated pairs, agreement with the majority)",
        interactive=False,
    )
    with gr.Row():
        rater = gr.Dropdown([], label="Rater", allow_custom_value=False)
        leave_out = gr.Button("Exclude from results (admin)", variant="stop")
        count_again = gr.Button("Count again (admin)")
    presets = gr.Dataframe(
        headers=PRESET_COLUMNS,
        label="Reward Lab presets: how often each SRP picks the raters' winner",
        interactive=False,
    )
    with gr.Row():
        view = gr.Radio(VIEWS, value="votes", label="Export")
        export_jsonl = gr.Button("Export JSONL")
        export_csv = gr.Button("Export CSV")
    export_file = gr.File(label="Exported file", interactive=False, height=80)

    outputs = [summary, plot, verdict, rates, scores, everyone, raters, rater, presets]
    show.click(bind(show_results, studio), [campaign, criterion], outputs, api_name="arena_results")
    for button, excluded in ((leave_out, True), (count_again, False)):
        button.click(
            bind(exclude, studio, excluded),
            [campaign, rater, criterion],
            outputs,
            api_name="arena_exclude" if excluded else "arena_include",
        )
    for button, fmt in ((export_jsonl, "jsonl"), (export_csv, "csv")):
        run_export = bind(export, studio, fmt)
        run_export.__name__ = f"export_{fmt}"
        button.click(run_export, [campaign, view], [export_file], api_name=f"arena_{fmt}")
