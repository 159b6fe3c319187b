"""The Train form's backend and reward dropdowns: every backend and reward is offered, the
choice lands in the YAML box, and a missing or non-diffusers folder is one clear line."""

from __future__ import annotations

import json
from types import SimpleNamespace

import gradio as gr
import pytest
import yaml

from app.core.models import Role
from app.core.startup import prepare
from app.web.auth import Authenticator
from app.web.context import Studio
from app.web.ui import train, train_setup
from srpo.models.loader import MODEL_NAMES
from srpo.rewards import REWARD_NAMES
from tests.web_support import add_account, web_settings


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    settings = web_settings(tmp_path_factory.mktemp("models"))
    db = prepare(settings)
    add_account(db, "tom", Role.TRAINER)
    studio = Studio(settings, db, Authenticator(db, settings.secret()))
    return SimpleNamespace(
        studio=studio, settings=settings, trainer=SimpleNamespace(username="tom")
    )


def choose(ctx, model, model_path="", reward="tiny", reward_path=""):
    advanced = yaml.safe_dump(train.preset_config("tiny-demo"))
    return train_setup.use_models(
        ctx.studio, advanced, model, model_path, reward, reward_path, ctx.trainer
    )


def test_every_backend_and_reward_is_offered():
    with gr.Blocks():
        model, _, reward, _, _ = train_setup.model_fields(train.preset_config("tiny-demo"))
    assert [c[0] for c in model.choices] == list(MODEL_NAMES)
    assert [c[0] for c in reward.choices] == list(REWARD_NAMES)
    assert {"flux", "flux2", "qwen-image", "sd3", "z-image"} <= set(MODEL_NAMES)


def test_a_chosen_folder_in_diffusers_layout_lands_in_the_yaml(ctx):
    folder = ctx.settings.data_dir / "models" / "qwen"
    (folder / "transformer").mkdir(parents=True)
    (folder / "transformer" / "config.json").write_text(json.dumps({}))
    advanced, check = choose(ctx, "qwen-image", str(folder), "pickscore", "")
    config = yaml.safe_load(advanced)
    assert config["model"] == "qwen-image" and config["model_path"] == str(folder)
    assert config["reward"] == "pickscore" and config["reward_path"] is None
    assert check.startswith("✓ model qwen-image")
    assert "✗ reward pickscore" in check and "hub downloads are off" in check


def test_a_missing_or_non_diffusers_folder_is_one_clear_line(ctx):
    _, missing = choose(ctx, "sd3", str(ctx.settings.data_dir / "nowhere"))
    assert "✗ model sd3" in missing and "nothing at" in missing
    plain = ctx.settings.data_dir / "plain"
    plain.mkdir()
    _, layout = choose(ctx, "flux2", str(plain))
    assert "✗ model flux2" in layout and "not in diffusers layout" in layout
    _, outside = choose(ctx, "z-image", "/etc")
    assert "✗ model z-image" in outside and "must be a path inside" in outside
    _, hub = choose(ctx, "flux")
    assert "needs a folder (model_path)" in hub
    _, tiny = choose(ctx, "tiny")
    assert tiny.startswith("✓ model tiny") and "✓ reward tiny" in tiny


def test_unknown_names_are_refused(ctx):
    with pytest.raises(gr.Error, match="model: one of"):
        choose(ctx, "sdxl")
    with pytest.raises(gr.Error, match="reward: one of"):
        choose(ctx, "tiny", reward="nope")


def test_a_preset_fills_the_model_fields(ctx):
    fields = train_setup.preset_models(ctx.studio, "qwen-image-official-32gpu", ctx.trainer)
    assert fields == ("qwen-image", "", "pickscore", "")
