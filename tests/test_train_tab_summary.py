"""The Train tab shows `srpo explain`'s summary under a valid form, escaped as typed."""

from app.web.ui.train import preset_config, validation_message


def test_a_valid_form_shows_what_the_run_will_do():
    message = validation_message(preset_config("tiny-demo"))
    assert message.startswith("✓ Valid: srpo on tiny")
    assert "k\\_den 0\\.1 / 0\\.175 / 0\\.25" in message or "k_den 0.1 / 0.175 / 0.25" in message
    assert "trainable parameters: 1,822,368" in message.replace("\\", "")


def test_control_words_in_the_summary_are_escaped():
    config = {**preset_config("tiny-demo"), "positive_words": ["<img src=x onerror=alert(1)>"]}
    message = validation_message(config)
    assert "<img" not in message and "&lt;img" in message


def test_a_user_given_model_path_is_not_read_to_count_parameters(tmp_path):
    config = {**preset_config("tiny-demo"), "model_path": str(tmp_path / "nowhere")}
    assert "trainable parameters: unknown" in validation_message(config)
