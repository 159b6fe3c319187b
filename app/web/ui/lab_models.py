"""Reward Lab, which reward scores and which base model samples: any reward of the registry
(or a weighted spec) and any backend, each from an optional local folder under the allowed
roots (:func:`app.core.admission.source`, as for a job). A missing or unloadable folder is a
one-line message, not a traceback.

Helpers :func:`chosen_reward` and :func:`chosen_base`; :func:`build` lays out the fields.
"""

from typing import Any

import gradio as gr

from app.core import admission
from app.core.errors import StudioError
from app.web.context import Studio
from srpo.models.loader import MODEL_NAMES, check_model_source
from srpo.rewards import REWARD_NAMES
from srpo.rewards.multi import is_spec

# what loading a reward or model raises for a folder that is missing, partial or not its kind
LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError)


def first_line(error: Exception) -> str:
    """An exception as the one line a user sees."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def chosen_reward(studio: Studio, name: Any, path: Any) -> Any:
    """The reward ``name`` (default: the studio's) with weights from ``path``, if given."""
    name = str(name or studio.settings.default_reward).strip()
    if name.lower() not in REWARD_NAMES and not is_spec(name):
        raise StudioError(f"reward: one of {', '.join(REWARD_NAMES)}, or a weighted spec")
    admission.reward_source(studio.settings, "reward", name)
    given = str(path or "").strip() or None
    if given is not None and name.lower() != "http":  # a scoring service's path is its URL
        given = admission.source(studio.settings, "reward path", given)
    try:
        return studio.models.reward(name, given)
    except LOAD_ERRORS as error:
        raise StudioError(f"reward {name}: {first_line(error)}") from None


def chosen_base(studio: Studio, name: Any, path: Any) -> dict[str, Any]:
    """The base model as a partial config: backend ``name`` (default: the studio's) from
    ``path`` (a folder in diffusers layout, or the tiny world's weights; none: its default)."""
    name = str(name or studio.settings.default_model).strip()
    if name not in MODEL_NAMES:
        raise StudioError(f"base model: one of {', '.join(MODEL_NAMES)}")
    given = str(path or "").strip() or None
    if given is not None:
        given = admission.source(studio.settings, "base model path", given)
    try:
        check_model_source(name, given)
    except ValueError as error:
        raise StudioError(f"base model: {first_line(error)}") from None
    return {"model": name, "model_path": given}


def build(studio: Studio) -> list[gr.components.Component]:
    """The reward and base-model fields, in a closed accordion (the studio's defaults
    chosen); returns ``[reward, reward path, base model, base model path]``."""
    with gr.Accordion("Reward and base model", open=False):
        with gr.Row():
            reward = gr.Dropdown(
                list(REWARD_NAMES),
                value=studio.settings.default_reward,
                label="Reward",
                allow_custom_value=True,
                info="a name, or a weighted spec such as 0.7*tiny+0.3*tiny-biased",
            )
            reward_path = gr.Textbox("", label="Reward weights (folder or file, optional)")
        with gr.Row():
            base = gr.Dropdown(
                list(MODEL_NAMES), value=studio.settings.default_model, label="Base model"
            )
            base_path = gr.Textbox("", label="Base model folder (diffusers layout, optional)")
    return [reward, reward_path, base, base_path]
