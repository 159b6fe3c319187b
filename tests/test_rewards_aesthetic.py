"""The LAION aesthetic predictor from a random small CLIP and its head's checkpoint format."""

import shutil

import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPModel

from srpo.rewards import load_reward, srp_form
from srpo.rewards.aesthetic import AestheticMLP, AestheticReward
from srpo.rewards.base import ImagePreprocess
from tests.factories import save_small_clip_folder


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    return save_small_clip_folder(tmp_path_factory.mktemp("clip"))


def reference(folder, head, pixels):
    """The predictor as its authors run it: CLIP image features, L2-normalised, the head."""
    model = CLIPModel.from_pretrained(folder).eval()
    inputs = ImagePreprocess(32, model_mean(folder), model_std(folder))(pixels)
    with torch.no_grad():
        embeds = model.get_image_features(pixel_values=inputs).pooler_output
        return head(F.normalize(embeds, dim=-1)).squeeze(-1)


def model_mean(folder):
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor.from_pretrained(folder).image_mean


def model_std(folder):
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor.from_pretrained(folder).image_std


@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_head_checkpoint_round_trip_scores_like_the_reference(tmp_path, clip_folder, kind):
    torch.manual_seed(0)
    head = AestheticMLP(16) if kind == "mlp" else torch.nn.Linear(16, 1)
    head.eval()
    folder = tmp_path / "aesthetic"
    shutil.copytree(clip_folder, folder)
    torch.save(head.state_dict(), folder / ("aesthetic-model.pth" if kind == "mlp" else "sa.pth"))
    reward = load_reward("aesthetic", folder)
    assert isinstance(reward, AestheticReward) and srp_form(reward) == "difference"
    pixels = torch.rand(3, 3, 48, 40)
    scores = reward.score(pixels, ["a cat", "", "anything"])
    assert torch.allclose(scores, reference(folder, head, pixels), atol=1e-5)
    # the file alone, with the CLIP tower given separately
    file = next(folder.glob("*.pth"))
    alone = AestheticReward.from_pretrained(file, clip=clip_folder)
    assert torch.allclose(alone.score(pixels, ["x"] * 3), scores, atol=1e-6)


def test_gradient_reaches_the_pixels_and_not_the_reward(tmp_path, clip_folder):
    torch.save(AestheticMLP(16).state_dict(), tmp_path / "head.pth")
    reward = AestheticReward.from_pretrained(tmp_path / "head.pth", clip=clip_folder)
    pixels = torch.rand(2, 3, 32, 32, requires_grad=True)
    reward.score(pixels, ["a", "b"]).sum().backward()
    assert pixels.grad.abs().sum() > 0
    assert all(p.grad is None for p in reward.parameters())


def test_a_file_that_is_not_a_head_is_a_clear_error(tmp_path, clip_folder):
    torch.save({"fc.weight": torch.zeros(1, 16)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not an aesthetic predictor head"):
        AestheticReward.from_pretrained(tmp_path / "bad.pth", clip=clip_folder)
    bad = AestheticMLP(16).state_dict()
    bad["layers.7.weight"] = torch.zeros(2, 16)
    torch.save(bad, tmp_path / "misshaped.pth")
    with pytest.raises(ValueError, match=r"layers\.7\.weight \[2, 16\] != \[1, 16\]"):
        AestheticReward.from_pretrained(tmp_path / "misshaped.pth", clip=clip_folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        load_reward("aesthetic", empty)
