import pytest
import yaml

from srpo.config import PRESETS, ConfigError, load_config, make_config, preset
from srpo.rewards.srp import ControlWords


def base(**overrides):
    return {
        "prompts": ["a red circle"],
        "positive_words": ["photo"],
        "negative_words": ["painting"],
        **overrides,
    }


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_validate_and_round_trip_through_yaml(name, tmp_path):
    config = preset(name)
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml())
    assert load_config(path) == config


def test_paper_preset_matches_method_md():
    config = preset("flux-paper-32gpu")
    adamw = config.adamw()
    assert adamw["lr"] == 5e-6 and adamw["weight_decay"] == 1e-4 and adamw["grad_clip"] == 0.1
    assert config.rollout_steps == 25 and config.shift == 3.0 and config.precision == "bf16"
    settings = config.direct_align
    assert (settings.discount_denoise.low, settings.discount_denoise.high) == (0.1, 0.25)
    assert (settings.discount_inversion.low, settings.discount_inversion.high) == (0.3, 0.01)
    assert settings.d == 0.022 and tuple(settings.sigma_range) == (0.75, 0.96)
    assert (config.effective_rollout_guidance, config.train_guidance) == (1.0, 3.5)
    assert preset("flux-paper-pickscore").effective_rollout_guidance == 2.0


@pytest.mark.parametrize("name", ["flux-lora-1gpu", "flux-paper-32gpu", "flux-paper-pickscore"])
def test_flux_presets_cycle_the_official_words_not_the_evaluation_words(name):
    config = preset(name)
    assert config.positive_words == ["Natural-lighting", "Detail", "Detailed", "Real"]
    assert config.negative_words == ["Concept art", "Painting", "Anime", "Flat", "Oil"]
    held_out = {"Realistic photo", "CG Render"}
    assert not held_out & {*config.positive_words, *config.negative_words}
    words = ControlWords.of(config.positive_words, config.negative_words, config.word_mode)
    assert [words.pick(step) for step in (0, 4, 5)] == [
        ("Natural-lighting", "Concept art"),
        ("Natural-lighting", "Oil"),
        ("Detail", "Concept art"),
    ]


def test_each_method_gets_its_authors_optimizer_unless_set():
    assert preset("flux-paper-32gpu", method="grpo").adamw()["lr"] == 1e-5
    assert preset("flux-paper-32gpu", method="grpo").adamw()["grad_clip"] == 1.0
    assert preset("flux-paper-32gpu").adamw()["lr"] == 5e-6
    tuned = preset("flux-paper-32gpu", method="grpo", optimizer={"lr": 3e-6})
    assert tuned.adamw()["lr"] == 3e-6 and tuned.adamw()["grad_clip"] == 1.0


def test_preset_overrides_merge_deeply():
    config = preset("tiny-demo", optimizer={"lr": 1e-5}, direct_align={"d": 0.03})
    assert config.adamw()["lr"] == 1e-5 and config.adamw()["grad_clip"] == 1.0
    assert config.direct_align.d == 0.03 and tuple(config.direct_align.sigma_range) == (0.5, 0.95)


def test_configs_in_the_old_flat_layout_mean_the_same_run():
    old = base(
        sigma_range=[0.5, 0.9],
        d=0.04,
        discount_denoise={"clean": 0.1, "noisy": 0.3},
        mixed_precision="bf16",
        guidance=2.0,
        baselines={"grpo_group_size": 4, "refl_steps": 20},
    )
    config = make_config(old)
    settings = config.direct_align
    assert tuple(settings.sigma_range) == (0.5, 0.9) and settings.d == 0.04
    # The same line k(s) = 0.1 + 0.2 s, now given by its values at the window's ends.
    assert settings.discount_denoise.low == pytest.approx(0.2)
    assert settings.discount_denoise.high == pytest.approx(0.28)
    assert config.precision == "bf16" and config.train_guidance == 2.0
    assert config.grpo.group_size == 4 and config.refl.steps == 20


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"optimizer": {"lr": -1e-4}}, "optimizer.lr", "greater than 0"),
        ({"prompts": []}, "prompts", "empty"),
        ({"method": "ppo"}, "method", "'srpo'"),
        (
            {"direct_align": {"sigma_range": [0.2, 1.5]}},
            "direct_align.sigma_range.1",
            "less than or equal to 1",
        ),
        ({"direct_align": {"sigma_range": [0.0, 0.5]}}, "direct_align", "0 < low"),
        ({"direct_align": {"d": 0.3, "sigma_range": [0.2, 0.6]}}, "direct_align", "too large"),
        ({"grpo": {"group_size": 1}}, "grpo.group_size", "greater than or equal to 2"),
        ({"draft": {"k": 2}}, "draft", "DRaFT-LV"),
        ({"precision": "fp16"}, "precision", "'fp32'"),
        ({"positive_words": []}, "config", "positive_words and negative_words"),
        ({"steps": 0}, "steps", "greater than or equal to 1"),
        ({"lora": {"rank": 0}}, "lora.rank", "greater than or equal to 1"),
        ({"learning_rate": 1}, "learning_rate", "Extra inputs"),
        ({"method": "direct_align"}, "config", "inversion"),
        # an eval seed torch cannot take (2**70) failed in the worker, not at submission
        ({"eval_seeds": [0, 2**70]}, "eval_seeds.1", "less than or equal to 2147483647"),
        ({"eval_seeds": list(range(65))}, "eval_seeds", "at most 64"),
        ({"eval_seeds": []}, "eval_seeds", "at least 1"),
        ({"eval_prompts": ["a red circle"] * 65}, "eval_prompts", "at most 64"),
    ],
)
def test_invalid_fields_are_named_with_their_range(overrides, field, reason):
    with pytest.raises(ConfigError) as error:
        make_config(base(**overrides))
    message = str(error.value)
    assert message.startswith("invalid training config: ")
    assert f"{field}: " in message and reason in message


def test_prompts_file_is_read_as_utf8(tmp_path):
    (tmp_path / "p.txt").write_text("a red circle\n\n  a blue square \n", encoding="utf-8")
    config = make_config(base(prompts=None, prompts_file="p.txt"))
    assert config.prompt_list(tmp_path) == ["a red circle", "a blue square"]
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="not UTF-8"):
        make_config(base(prompts=None, prompts_file="bad.txt")).prompt_list(tmp_path)
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(ConfigError, match="no prompts"):
        make_config(base(prompts=None, prompts_file="empty.txt")).prompt_list(tmp_path)
    with pytest.raises(ConfigError, match="exactly one"):
        make_config(base(prompts_file="p.txt"))


def test_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("a: [1, 2")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("flux-pro")
