import warnings

import open_clip
import pytest
import torch

from srpo.rewards import ImagePreprocess, check_pixels, load_reward
from srpo.rewards.clip import CLIPReward
from srpo.rewards.hps import HPSReward
from tests.factories import register_small_open_clip, save_small_clip_folder


@pytest.fixture(scope="module")
def small_arch(tmp_path_factory):
    return register_small_open_clip(tmp_path_factory.mktemp("openclip"))


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    return save_small_clip_folder(tmp_path_factory.mktemp("clip"))


def hps_model(arch):
    torch.manual_seed(0)
    return open_clip.create_model(arch, pretrained=None, load_weights=False)


@pytest.mark.parametrize("wrap", ["state_dict", "bare", "module_prefix"])
def test_hps_checkpoint_round_trip_scores_identically(tmp_path, small_arch, wrap):
    model = hps_model(small_arch)
    state = model.state_dict()
    if wrap == "module_prefix":
        state = {f"module.{k}": v for k, v in state.items()}
    payload = {"state_dict": state} if wrap != "bare" else state
    path = tmp_path / "HPS_v2.1_compressed.pt"
    torch.save(payload, path)

    reward = HPSReward.from_checkpoint(path, arch=small_arch)
    pixels = torch.rand(3, 3, 40, 48)
    texts = ["a red circle", "a photo of a cat", "painting"]
    reference = HPSReward(model, open_clip.get_tokenizer(small_arch))
    assert torch.allclose(reward.score(pixels, texts), reference.score(pixels, texts), atol=1e-6)
    embeds = reward.encode_image(pixels)
    assert torch.allclose(embeds.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert not any(p.requires_grad for p in reward.parameters())


def test_hps_mismatched_checkpoint_names_the_keys(tmp_path, small_arch):
    state = hps_model(small_arch).state_dict()
    state.pop("logit_scale")
    state["extra.weight"] = torch.zeros(2)
    state["text_projection"] = torch.zeros(3, 3)
    torch.save({"state_dict": state}, tmp_path / "bad.pt")
    with pytest.raises(ValueError) as error:
        HPSReward.from_checkpoint(tmp_path / "bad.pt", arch=small_arch)
    message = str(error.value)
    assert "missing keys: logit_scale" in message
    assert "unexpected keys: extra.weight" in message
    assert "text_projection [3, 3]" in message


def test_missing_checkpoint_file_is_a_clear_error(tmp_path, small_arch):
    with pytest.raises(FileNotFoundError, match="not found"):
        HPSReward.from_checkpoint(tmp_path / "nope" / "x.pt", arch=small_arch)


def test_hub_checkpoint_offline_is_a_clear_error(small_arch):
    with pytest.raises(FileNotFoundError, match="neither a local file nor downloadable"):
        HPSReward.from_checkpoint("HPS_v2.1_compressed.pt", arch=small_arch)


def test_gradient_flows_to_pixels_not_to_reward(small_arch):
    reward = HPSReward(hps_model(small_arch), open_clip.get_tokenizer(small_arch))
    pixels = torch.rand(2, 3, 32, 32, requires_grad=True)
    reward.score(pixels, ["a cat", "a dog"]).sum().backward()
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0
    assert all(p.grad is None for p in reward.parameters())


def test_long_prompt_is_truncated_with_one_warning(small_arch):
    reward = HPSReward(hps_model(small_arch), open_clip.get_tokenizer(small_arch))
    long_prompt = "word " * 200
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = reward.encode_text([long_prompt])
        reward.encode_text([long_prompt + "again", "short"])
    assert len([w for w in caught if "truncated" in str(w.message)]) == 1
    assert torch.isfinite(first).all()


def test_pickscore_and_clip_from_a_local_folder(clip_folder):
    pick = CLIPReward.from_pretrained(clip_folder, scale_by_logit=True, name="pickscore")
    clip = load_reward("clip", clip_folder)
    pixels = torch.rand(2, 3, 50, 40)
    texts = ["a red circle", "a blue square"]
    cosine = clip.score(pixels, texts)
    assert pick.scale == pytest.approx(float(pick.model.logit_scale.exp()))
    assert torch.allclose(pick.score(pixels, texts), pick.scale * cosine, atol=1e-5)
    assert cosine.abs().max() <= 1.0 + 1e-5


def test_clip_long_prompt_warns_once(clip_folder):
    clip = load_reward("clip", clip_folder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clip.encode_text(["red " * 40, "blue " * 40])
    assert sum("truncated" in str(w.message) for w in caught) == 1


def test_unknown_reward_name():
    with pytest.raises(ValueError, match=r"unknown reward 'hps3'.*hpsv2\.1"):
        load_reward("hps3")


@pytest.mark.parametrize(
    ("pixels", "message"),
    [
        (torch.rand(3, 32, 32), "shape"),
        (torch.rand(1, 4, 32, 32), "shape"),
        (torch.rand(1, 3, 8, 8) * 255, r"\[0, 1\]"),
        (torch.full((1, 3, 8, 8), float("nan")), "NaN"),
    ],
)
def test_bad_pixels_are_rejected(pixels, message):
    with pytest.raises(ValueError, match=message):
        check_pixels(pixels)


def test_preprocess_resizes_short_side_and_center_crops():
    pre = ImagePreprocess(16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    pixels = torch.zeros(1, 3, 32, 64)
    pixels[..., 24:40] = 1.0  # a bright vertical band in the middle
    out = pre(pixels)
    assert out.shape == (1, 3, 16, 16)
    assert out[..., 8].mean() > 0.9 and out[..., 0].mean() < -0.9
