import pytest
import yaml

from srpo.config import PRESETS, ConfigError, load_config, make_config, preset


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
    assert config.optimizer.lr == 5e-6 and config.optimizer.weight_decay == 1e-4
    assert config.optimizer.grad_clip == 0.1 and config.rollout_steps == 25 and config.shift == 3.0
    assert (config.discount_denoise.clean, config.discount_denoise.noisy) == (0.1, 0.25)
    assert (config.discount_inversion.clean, config.discount_inversion.noisy) == (0.3, 0.01)
    assert config.d == 0.022 and tuple(config.sigma_range) == (0.75, 0.96)


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"optimizer": {"lr": -1e-4}}, "optimizer.lr", "greater than 0"),
        ({"prompts": []}, "prompts", "empty"),
        ({"method": "ppo"}, "method", "'srpo'"),
        ({"sigma_range": [0.2, 1.5]}, "sigma_range.1", "less than or equal to 1"),
        ({"sigma_range": [0.0, 0.5]}, "config", "0 < low"),
        ({"d": 0.3, "sigma_range": [0.2, 0.6]}, "config", "too large"),
        ({"positive_words": []}, "config", "positive_words and negative_words"),
        ({"steps": 0}, "steps", "greater than or equal to 1"),
        ({"lora": {"rank": 0}}, "lora.rank", "greater than or equal to 1"),
        ({"learning_rate": 1}, "learning_rate", "Extra inputs"),
        ({"method": "direct_align"}, "config", "inversion"),
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
