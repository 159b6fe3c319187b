"""Reward Lab tab: how the reward and its SRP form score images, before any training.

Handlers: :func:`preview`, :func:`sweep`, :func:`save_preset`, :func:`load_preset` and
:func:`refresh`; the scoring itself is :mod:`srpo.lab`, the models come from the studio's
:class:`app.core.model_refs.ModelCache`.
"""

from collections.abc import Callable
from typing import Any

import gradio as gr
import pandas as pd
import torch
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.core import model_refs, reads
from app.core.errors import Conflict, StudioError
from app.core.models import RewardPreset, Role
from app.web.context import Studio
from app.web.ui import lab_models
from app.web.ui.common import Refresh, bind, caller, every_so_often, friendly, text, words
from app.web.ui.lab_models import LOAD_ERRORS, chosen_base, chosen_reward, first_line

MAX_SEEDS = 16
OVERLAY_SIDE = 192  # saliency overlays are upscaled (smoothly) to at least this many pixels

# A preview's per-word columns (r(word. p), srp(pos / neg)) sit between r(p) and srp.
SCORE_COLUMNS = ["image", "r(p)", "srp", "rank before", "rank after"]
SWEEP_COLUMNS = ["word", "mean shift", "spread", "effect", "barely moves the reward", "tokenizer"]


def preset_names(studio: Studio) -> list[str]:
    """Saved reward presets, by name."""
    with studio.db.session() as session:
        return list(session.scalars(select(RewardPreset.name).order_by(RewardPreset.name)))


def model_choices(studio: Studio) -> list[str]:
    """``base`` and every checkpoint, as the lab's model choices."""
    with studio.db.session() as session:
        rows = reads.checkpoint_rows(session)
    return ["base"] + [f"checkpoint:{r['id']}" for r in rows]


def pixels_for(
    studio: Studio,
    source: str,
    model: str,
    prompt: str,
    seeds: str,
    uploads: list[str] | None,
    on_step: Callable[[int, int], None] | None = None,
    base: dict[str, Any] | None = None,
    reward: Any = None,
) -> torch.Tensor:
    """The images to score: sampled from a model at fixed seeds (``on_step(done, total)``
    hears of each denoising step; ``base``: what ``base`` means, default the studio's base
    model), or uploaded (at ``reward``'s input size, default the studio's reward's)."""
    from srpo import lab, lab_uploads
    from srpo.sampling import parse_seeds

    if source == "uploads":
        if not uploads:
            raise StudioError("uploads: add at least one image (PNG, JPEG or WebP)")
        size = lab.reward_input_size(reward if reward is not None else studio.models.reward())
        return lab_uploads.load_uploads(list(uploads), size)
    chosen = parse_seeds(seeds or "")
    if len(chosen) > MAX_SEEDS:
        raise StudioError(f"seeds: at most {MAX_SEEDS} in the lab")
    lab.validate_prompt(prompt)
    with studio.db.session() as session:
        ref = model_refs.resolve_ref(session, studio.settings, model, base)
    steps, shift = model_refs.sampling_steps(ref.config)

    def sample() -> torch.Tensor:
        try:
            generator = studio.models.generator(ref)
        except LOAD_ERRORS as error:
            raise StudioError(f"model {ref.config['model']}: {first_line(error)}") from None
        return lab.sample_lab_images(generator, prompt, chosen, steps, shift, on_step)

    with studio.models.lock:
        return studio.models.images(ref, prompt, chosen, sample)


def parse_model(model: str) -> str:
    """``model`` checked as a Lab model reference: ``base`` or ``checkpoint:ID``."""
    if model != "base" and not (model.startswith("checkpoint:") and model[11:].isdigit()):
        raise StudioError("model: base or checkpoint:ID")
    return model


@friendly
def preview(
    studio: Studio,
    prompt,
    positive,
    negative,
    k,
    source,
    model,
    seeds,
    uploads,
    reward_name,
    reward_path,
    base_name,
    base_path,
    request: gr.Request,
    progress=gr.Progress(),  # noqa: B008 (Gradio's marker for a progress parameter)
):
    """Score the images with r(p), r(pos. p), r(neg. p) and SRP; rankings and saliency.
    The reward and the base model are the chosen ones (:mod:`app.web.ui.lab_models`). The
    progress bar follows the denoising steps, then scoring."""
    from srpo import lab

    caller(studio, request, Role.TRAINER)
    progress(0, desc="Loading the reward and the model")
    reward = chosen_reward(studio, reward_name, reward_path)
    base = chosen_base(studio, base_name, base_path)

    sampled = every_so_often(
        lambda done, total: progress((done, total), desc="Sampling images", unit="steps")
    )
    batch = pixels_for(
        studio, source, parse_model(model), prompt, seeds, uploads, sampled, base, reward
    )
    prompt_text = prompt if source == "current model" else (prompt or "")
    progress(1, desc="Scoring with the reward and its saliency")
    with studio.models.lock:
        result = lab.preview(reward, batch, prompt_text, words(positive), words(negative), k)
    rows = pd.DataFrame(result.rows()).round(4)
    long = [
        {"image": f"#{n}", "score": float(value), "condition": condition}
        for n in range(len(batch))
        for condition, value in _conditions(result, n)
    ]
    before = ", ".join(f"#{i}" for i in result.rank_plain)
    after = ", ".join(f"#{i}" for i in result.rank_srp)
    moved = sum(a != b for a, b in zip(result.rank_plain, result.rank_srp, strict=True))
    ranking_text = (
        f"**Ranking before** (r(p)): {before}  \n**Ranking after** (SRP): {after}  \n"
        f"{moved} of {len(batch)} places changed."
    )
    pictures = [picture(image) for image in batch]
    overlays = lab.overlays(result, batch, upscale=max(1, -(-OVERLAY_SIDE // batch.shape[-1])))
    captions = [f"#{n} · SRP {float(result.srp[n]):.3f}" for n in range(len(batch))]
    message = (
        f"Scored {len(batch)} image(s) for “{text(result.prompt)}” with "
        f"{len(result.positive)} positive and {len(result.negative)} negative word(s)."
    )
    return (
        batch,
        message,
        rows,
        pd.DataFrame(long),
        ranking_text,
        [(p, f"#{n}") for n, p in enumerate(pictures)],
        list(zip(overlays, captions, strict=True)),
    )


@friendly
def sweep(studio: Studio, prompt, candidates, batch, reward_name, reward_path, request: gr.Request):
    """How far each candidate word moves the chosen reward on the previewed images."""
    from srpo import lab

    caller(studio, request, Role.TRAINER)
    if batch is None:
        raise StudioError("preview first: the sweep scores the same images")
    reward = chosen_reward(studio, reward_name, reward_path)
    with studio.models.lock:
        result = lab.sensitivity_sweep(reward, batch, prompt, words(candidates))
    frame = pd.DataFrame(
        [
            {
                "word": w.word,
                "mean shift": round(w.mean_shift, 4),
                "spread": round(w.spread, 4),
                "effect": round(w.effect, 4),
                "barely moves the reward": "yes" if w.flagged else "",
                "tokenizer": _tokenizer_note(w),
            }
            for w in result.words
        ]
    )
    warnings = []
    if result.unknown:
        unknown = ", ".join(f"“{text(w)}”" for w in result.unknown)
        warnings.append(
            f"⚠ The reward's tokenizer does not know {unknown}: it reads each as its unknown "
            "token, so unknown words score alike. Use words it knows."
        )
    if result.truncated:
        cut = ", ".join(f"“{text(w)}”" for w in result.truncated)
        warnings.append(
            f"⚠ With {cut} in front, the prompt is longer than the reward reads: its end is cut."
        )
    if result.flagged:
        flagged = ", ".join(f"“{text(w)}”" for w in result.flagged)
        warnings.append(
            f"⚠ {flagged} barely move the reward (effect below {result.threshold:.3f}); "
            "the reward model may not know them. Prefer words with a larger effect."
        )
    return frame, "\n\n".join(warnings) or "Every candidate moves the reward."


def _tokenizer_note(entry) -> str:
    """What the reward's tokenizer makes of a swept word: unknown pieces, a cut prompt."""
    notes = [f"unknown: {', '.join(entry.unknown)}"] if entry.unknown else []
    return "; ".join([*notes, *(["prompt cut"] if entry.truncated else [])])


@friendly
def save_preset(studio: Studio, name, positive, negative, k, request: gr.Request):
    """Store the control words and k under a name (refused if the name is taken)."""
    from srpo import lab

    who = caller(studio, request, Role.TRAINER)
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise StudioError("preset name: 1-100 characters")
    pos, neg = (
        lab.validate_words(words(positive), "positive"),
        lab.validate_words(words(negative), "negative"),
    )

    def store(session) -> None:
        row = RewardPreset(
            name=name,
            positive_words=list(pos),
            negative_words=list(neg),
            k=float(k),
            created_by=who.id,
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            raise Conflict(f"a preset named {name!r} exists") from None

    studio.db.write(store)
    return f"Saved preset “{text(name)}”.", gr.update(choices=preset_names(studio), value=name)


@friendly
def load_preset(studio: Studio, name, request: gr.Request):
    """A saved preset's positive words, negative words and k."""
    caller(studio, request, Role.TRAINER)
    with studio.db.session() as session:
        row = session.scalar(select(RewardPreset).where(RewardPreset.name == name))
        if row is None:
            raise StudioError("choose a saved preset first")
        return ", ".join(row.positive_words), ", ".join(row.negative_words), row.k


def refresh(studio: Studio, request: gr.Request):
    """The tab's lists, re-read: saved presets and models."""
    caller(studio, request, Role.TRAINER)
    return gr.update(choices=preset_names(studio)), gr.update(choices=model_choices(studio))


def build(studio: Studio) -> Refresh:
    """Lay out the Reward Lab and wire its events to the handlers above."""
    pixels = gr.State(None)
    with gr.Row():
        with gr.Column(scale=2):
            prompt = gr.Textbox(label="Prompt", value="a red circle", max_length=1000)
            with gr.Row():
                positive = gr.Textbox(label="Positive control words", value="photo")
                negative = gr.Textbox(label="Negative control words", value="painting")
            k = gr.Slider(
                0,
                2,
                value=0.1,
                step=0.05,
                label="k (share of absolute reward)",
                info="Saved with the preset; a job that uses the preset trains its denoise "
                "branch with this k across the window.",
            )
            with gr.Row():
                source = gr.Radio(
                    ["current model", "uploads"], value="current model", label="Images"
                )
                model = gr.Dropdown(["base"], value="base", label="Model", allow_custom_value=True)
                seeds = gr.Textbox(label="Seeds", value="0-7", max_length=200)
            uploads = gr.File(
                label="Uploads (PNG, JPEG, WebP)",
                file_count="multiple",
                type="filepath",
                height=110,
            )
            chosen = lab_models.build(studio)
            preview_button = gr.Button("Preview reward shift", variant="primary")
        with gr.Column(scale=1):
            preset = gr.Dropdown([], label="Saved presets", allow_custom_value=True)
            load_button = gr.Button("Load preset")
            preset_name = gr.Textbox(label="Save as preset", max_length=100)
            save_button = gr.Button("Save preset")
            preset_status = gr.Markdown(elem_classes=["status"])
    status = gr.Markdown(elem_classes=["status"])
    # headed before the first preview (an empty frame, not Gradio's "1 2 3")
    table = gr.Dataframe(
        pd.DataFrame(columns=SCORE_COLUMNS), label="Scores per image", interactive=False, wrap=True
    )
    chart = gr.ScatterPlot(
        x="image", y="score", color="condition", label="r(p), r(pos. p), r(neg. p) and SRP"
    )
    ranking = gr.Markdown()
    from srpo import lab as srpo_lab

    # four a row at their own height: eight in 260 px cut the captions off
    images = gr.Gallery(label="Images", columns=4, height="auto", object_fit="contain")
    with gr.Row(equal_height=False):
        saliency = gr.Gallery(
            label="Saliency of the SRP reward (|d SRP / d pixel|, smoothed)",
            columns=4,
            height="auto",
            object_fit="contain",
            scale=4,
        )
        gr.Image(
            srpo_lab.colour_scale(),
            label="Colour scale",
            interactive=False,
            buttons=[],
            scale=1,
        )
    with gr.Accordion("Sensitivity sweep", open=False):
        candidates = gr.Textbox(
            label="Candidate words", value="photo, painting, flat, bright, dark, warm, zebra"
        )
        sweep_button = gr.Button("Sweep")
        sweep_table = gr.Dataframe(
            pd.DataFrame(columns=SWEEP_COLUMNS), label="Reward shift per word", interactive=False
        )
        sweep_warning = gr.Markdown(elem_classes=["status"])

    preview_button.click(
        bind(preview, studio),
        [prompt, positive, negative, k, source, model, seeds, uploads, *chosen],
        [pixels, status, table, chart, ranking, images, saliency],
        api_name="lab_preview",
        # one progress bar, on the scores table under the button: one on each of the seven
        # outputs made Chromium draw each move seven times, on the cores the sampling needs
        show_progress_on=[table],
    )
    sweep_button.click(
        bind(sweep, studio),
        [prompt, candidates, pixels, *chosen[:2]],
        [sweep_table, sweep_warning],
        api_name="lab_sweep",
    )
    save_button.click(
        bind(save_preset, studio),
        [preset_name, positive, negative, k],
        [preset_status, preset],
        api_name="lab_save_preset",
    )
    load_button.click(
        bind(load_preset, studio), [preset], [positive, negative, k], api_name="lab_load_preset"
    )
    return bind(refresh, studio), [preset, model]


def _conditions(result: Any, n: int) -> list[tuple[str, float]]:
    pairs = [("r(p)", result.plain[n])]
    pairs += [(f"r({w}. p)", result.positive_scores[i, n]) for i, w in enumerate(result.positive)]
    pairs += [(f"r({w}. p)", result.negative_scores[j, n]) for j, w in enumerate(result.negative)]
    return [*pairs, ("SRP", result.srp[n])]


def picture(image: torch.Tensor):
    """One image in [0, 1] as a PIL image, three times larger (pixel repeats keep the tiny
    world's pixels sharp)."""
    from PIL import Image

    array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(array).resize((array.shape[1] * 3, array.shape[0] * 3), Image.NEAREST)
