"""Train tab, what a job runs on and where: the preset's fields, the backend and reward
choosers (each checked for whether this studio can load it) and the launch fields.

Each writes into the form's YAML box, which carries its fields to the one submission path;
:func:`advanced_fields` is how every handler reads that box.
"""

from typing import Any

import gradio as gr
import yaml

from app.core.errors import StudioError
from app.core.models import Role
from app.web.context import Studio
from app.web.ui.common import bind, caller, friendly, text

# Where the job runs; these fields write into the YAML box, which carries them to the submit.
LAUNCH = ("launcher", "num_workers", "nodes")


def advanced_fields(advanced: str | None) -> dict[str, Any]:
    """The YAML box's fields, refused with a clear message unless they are a mapping."""
    try:
        config = yaml.safe_load(advanced or "") or {}
    except yaml.YAMLError as error:
        raise StudioError(f"advanced config is not valid YAML: {error}") from None
    except RecursionError:
        raise StudioError("advanced config is nested too deeply") from None
    if not isinstance(config, dict):
        raise StudioError("advanced config must be a mapping of fields")
    return config


def preset_config(name: str) -> dict[str, Any]:
    """A copy of a named preset's fields, as the form shows them."""
    from srpo.config import PRESETS, deep_merge

    if name not in PRESETS:
        raise StudioError(f"preset: one of {', '.join(PRESETS)}")
    return deep_merge(PRESETS[name], {})


def launch_values(config: dict[str, Any]) -> tuple:
    """What the launch fields show for a config: launcher, workers, nodes."""
    return config.get("launcher") or "local", config.get("num_workers"), config.get("nodes")


def with_launch(advanced: str, launcher, workers, nodes) -> str:
    """The YAML box's fields with the launch fields written over them (blank: unset)."""
    config = advanced_fields(advanced)
    config["launcher"] = launcher or "local"
    for field, value in (("num_workers", workers), ("nodes", nodes)):
        if value is None:
            config.pop(field, None)
        else:
            config[field] = int(value)
    return yaml.safe_dump(config, sort_keys=False)


SHIPPED_REWARDS = ("tiny", "tiny-biased")  # weights in the package, nothing to fetch


def _source_line(settings, kind: str, name: str, field: str, folder: str | None, hub: str) -> str:
    """One line on whether ``name`` can be loaded here from ``folder`` (or the hub)."""
    from app.core.admission import source

    if folder:
        try:
            resolved = source(settings, field, folder)
        except StudioError as error:
            return f"✗ {kind} {name}: {text(error)}"
        if field == "model_path":
            from srpo.models.loader import check_model_source

            try:
                check_model_source(name, resolved)
            except ValueError as error:
                return f"✗ {kind} {name}: {text(error)}"
        return f"✓ {kind} {name}: from {text(folder)}"
    if settings.allow_hub:
        return f"✓ {kind} {name}: from the hub ({text(hub)})"
    return f"✗ {kind} {name}: needs a folder ({field}); hub downloads are off (SRPO_ALLOW_HUB)"


def models_check(settings, model: str, model_path, reward: str, reward_path) -> str:
    """Whether the chosen backend and reward can be loaded by this studio, one line each."""
    from srpo.models.loader import backend

    if model == "tiny":
        lines_ = ["✓ model tiny: the shipped tiny world"]
    else:
        hub = backend(model).hub_id or model
        lines_ = [_source_line(settings, "model", model, "model_path", model_path, hub)]
    if reward in SHIPPED_REWARDS and not reward_path:
        lines_.append(f"✓ reward {reward}: shipped weights")
    else:
        lines_.append(_source_line(settings, "reward", reward, "reward_path", reward_path, reward))
    return "\n\n".join(lines_)


@friendly
def use_models(
    studio: Studio, advanced, model, model_path, reward, reward_path, request: gr.Request
):
    """Write the chosen backend and reward (and their folders) into the YAML box, and say
    whether each can be loaded here (a missing or non-diffusers folder is a clear line)."""
    from srpo.models.loader import MODEL_NAMES
    from srpo.rewards import REWARD_NAMES

    caller(studio, request, Role.TRAINER)
    if model not in MODEL_NAMES:
        raise StudioError(f"model: one of {', '.join(MODEL_NAMES)}")
    if reward not in REWARD_NAMES:
        raise StudioError(f"reward: one of {', '.join(REWARD_NAMES)}")
    config = advanced_fields(advanced)
    model_path, reward_path = (
        (model_path or "").strip() or None,
        (reward_path or "").strip() or None,
    )
    config |= {"model": model, "model_path": model_path}
    config |= {"reward": reward, "reward_path": reward_path}
    check = models_check(studio.settings, model, model_path, reward, reward_path)
    return yaml.safe_dump(config, sort_keys=False), check


@friendly
def preset_models(studio: Studio, chosen, request: gr.Request):
    """The backend, reward and folders a preset names, for the model fields."""
    caller(studio, request, Role.TRAINER)
    config = preset_config(chosen)
    return (
        config.get("model", "tiny"),
        config.get("model_path") or "",
        config.get("reward", "tiny"),
        config.get("reward_path") or "",
    )


@friendly
def preset_launch(studio: Studio, chosen, request: gr.Request):
    """The launch fields of a preset."""
    caller(studio, request, Role.TRAINER)
    return launch_values(preset_config(chosen))


@friendly
def set_launch(studio: Studio, advanced, launcher, workers, nodes, request: gr.Request):
    """Write the launch fields into the YAML box (the form submits what the box holds)."""
    caller(studio, request, Role.TRAINER)
    return with_launch(advanced, launcher, workers, nodes)


def model_fields(first: dict[str, Any]) -> list:
    """Backend and reward dropdowns with their folders, and the line that checks them."""
    from srpo.models.loader import MODEL_NAMES
    from srpo.rewards import REWARD_NAMES

    with gr.Row():
        model = gr.Dropdown(list(MODEL_NAMES), value=first.get("model", "tiny"), label="Model")
        model_path = gr.Textbox(label="Model folder (diffusers layout)", max_length=1000)
    with gr.Row():
        reward = gr.Dropdown(list(REWARD_NAMES), value=first.get("reward", "tiny"), label="Reward")
        reward_path = gr.Textbox(label="Reward weights (file or folder)", max_length=1000)
    status = gr.Markdown(elem_classes=["status", "models-check"])
    return [model, model_path, reward, reward_path, status]


def launch_fields(first: dict[str, Any]) -> list:
    """Launcher, workers and nodes, as ``first`` sets them."""
    shown = launch_values(first)
    with gr.Row():
        return [
            gr.Dropdown(["local", "ray"], value=shown[0], label="Launcher"),
            gr.Number(shown[1], label="Workers (GPUs)", precision=0, minimum=1),
            gr.Number(shown[2], label="Nodes (ray)", precision=0, minimum=1),
        ]


def wire(studio: Studio, preset, advanced, launch: list, model_fields: list) -> None:
    """A preset fills these fields; the user's edits of them write into the YAML box."""
    preset.change(bind(preset_launch, studio), [preset], launch)
    for field in launch:  # .input: the user's edits only, not the preset's
        field.input(bind(set_launch, studio), [advanced, *launch], [advanced], queue=False)
    *chosen, models_status = model_fields
    preset.change(bind(preset_models, studio), [preset], chosen, queue=False)
    for field in chosen:  # .input: the user's edits only, not the preset's
        field.input(
            bind(use_models, studio),
            [advanced, *chosen],
            [advanced, models_status],
            queue=False,
        )
