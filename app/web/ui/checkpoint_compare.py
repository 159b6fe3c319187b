"""Checkpoints tab, comparing any two models: base or a checkpoint of any job, rendered side by
side at the same prompt and seeds with the Lab's sampler, so checkpoints of different runs (with
different eval prompts and seeds of their own) can be set against each other.

Handler: :func:`compare_models`. Within one job, the Train tab's Compare samples view shows the
stored sample steps instead (:mod:`app.web.ui.train_compare`).
"""

import gradio as gr

from app.core import arena
from app.core.errors import StudioError
from app.core.models import Role
from app.web.context import Studio
from app.web.ui.arena import labelled_models
from app.web.ui.common import bind, caller, every_so_often, friendly
from app.web.ui.lab import parse_model, picture, pixels_for
from srpo.sampling import parse_seeds


@friendly
def compare_models(
    studio: Studio,
    model_a,
    model_b,
    prompt,
    seeds,
    request: gr.Request,
    progress=gr.Progress(),  # noqa: B008 (Gradio's marker for a progress parameter)
):
    """Models A and B sampled at the same prompt and seeds, in pairs (A left, B right)."""
    caller(studio, request, Role.TRAINER)
    if not model_a or not model_b:
        raise StudioError("choose model A and model B")
    a, b = parse_model(str(model_a)), parse_model(str(model_b))
    if a == b:
        raise StudioError("model A and model B are the same: choose two different models")
    with studio.db.session() as session:
        labels = arena.model_labels(session, [a, b])
    batches = []
    for n, ref in enumerate((a, b)):

        @every_so_often
        def sampled(done: int, total: int, n: int = n, ref: str = ref) -> None:
            progress((n * total + done, 2 * total), desc=f"Sampling {labels[ref]}", unit="steps")

        batches.append(pixels_for(studio, "current model", ref, prompt, seeds, None, sampled))
    shown = []
    for seed, image_a, image_b in zip(parse_seeds(seeds), *batches, strict=True):
        shown += [
            (picture(image_a), f"A · {labels[a]} · seed {seed}"),
            (picture(image_b), f"B · {labels[b]} · seed {seed}"),
        ]
    message = f"{labels[a]} (left) against {labels[b]} (right) on “{prompt}”."
    return shown, message


def choices(studio: Studio) -> list[gr.components.Component]:
    """The two model dropdowns' choices, for the tab's refresh."""
    found = labelled_models(studio)
    return [gr.update(choices=found), gr.update(choices=found)]


def build(studio: Studio) -> list[gr.Dropdown]:
    """Lay out the compare view; returns the two model dropdowns the tab's refresh fills."""
    with gr.Accordion("Compare two models (any jobs)", open=False):
        with gr.Row():
            model_a = gr.Dropdown([], label="Model A (left)", allow_custom_value=True)
            model_b = gr.Dropdown([], label="Model B (right)", allow_custom_value=True)
        with gr.Row():
            prompt = gr.Textbox(label="Prompt", value="a red circle", max_length=1000)
            seeds = gr.Textbox(label="Seeds", value="0-3", max_length=200)
            go = gr.Button("Render A and B", scale=0)
        message = gr.Markdown(elem_classes=["status"])
        pairs = gr.Gallery(label="A | B at the same seeds", columns=2, height="auto")
    go.click(
        bind(compare_models, studio),
        [model_a, model_b, prompt, seeds],
        [pairs, message],
        api_name="checkpoint_compare",
    )
    return [model_a, model_b]
