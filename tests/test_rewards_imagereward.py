"""ImageReward from a random small BLIP config, through its own checkpoint's key layout."""

import pytest
import torch
import torch.nn.functional as F
from transformers import BlipTextConfig, BlipVisionConfig

from srpo.rewards import load_reward, srp_form
from srpo.rewards.imagereward import REWARD_MEAN, REWARD_STD, ImageReward
from srpo.tiny_world.tokenizer import build_word_tokenizer
from tests.factories import WORDS

# transformers' BLIP names -> the original BLIP ViT's (as ImageReward.pt stores them)
TO_BLIP = (
    ("embeddings.class_embedding", "cls_token"),
    ("embeddings.position_embedding", "pos_embed"),
    ("embeddings.patch_embedding.", "patch_embed.proj."),
    ("post_layernorm.", "norm."),
    ("encoder.layers.", "blocks."),
    ("self_attn.projection.", "attn.proj."),
    ("self_attn.qkv.", "attn.qkv."),
    ("layer_norm1.", "norm1."),
    ("layer_norm2.", "norm2."),
)


def small_reward(tokenizer):
    torch.manual_seed(0)
    vision = BlipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        layer_norm_eps=1e-6,
    )
    text = BlipTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=24,
        encoder_hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=40,
        bos_token_id=None,
        sep_token_id=None,
        pad_token_id=0,
    )
    return ImageReward.build(vision, text, tokenizer)


def original_state(reward):
    """The reward's weights as ImageReward.pt holds them, with BLIP's unused extras."""
    state = {}
    for key, value in reward.vision.state_dict().items():
        for new, old in TO_BLIP:
            key = key.replace(new, old)
        state[f"blip.visual_encoder.{key}"] = value.clone()
    for key, value in reward.text.state_dict().items():
        state[f"blip.text_encoder.{key}"] = value.clone()
    state["blip.text_encoder.embeddings.position_ids"] = torch.arange(40)[None]
    state["blip.vision_proj.weight"] = torch.zeros(8, 32)
    state["blip.text_proj.weight"] = torch.zeros(8, 24)
    for key, value in reward.mlp.state_dict().items():
        state[f"mlp.{key}"] = value.clone()
    return state


def blip_vit(state, pixels, heads=2, eps=1e-6):
    """BLIP's VisionTransformer.forward, written from its keys (the reference)."""
    p = {k.removeprefix("blip.visual_encoder."): v for k, v in state.items()}
    x = F.conv2d(pixels, p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], stride=8)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([p["cls_token"].expand(x.shape[0], -1, -1), x], 1) + p["pos_embed"]
    width = x.shape[-1]
    for i in range(2):
        b = f"blocks.{i}."
        h = F.layer_norm(x, (width,), p[b + "norm1.weight"], p[b + "norm1.bias"], eps)
        qkv = F.linear(h, p[b + "attn.qkv.weight"], p[b + "attn.qkv.bias"])
        q, k, v = qkv.reshape(x.shape[0], x.shape[1], 3, heads, -1).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(x.shape)
        x = x + F.linear(att, p[b + "attn.proj.weight"], p[b + "attn.proj.bias"])
        h = F.layer_norm(x, (width,), p[b + "norm2.weight"], p[b + "norm2.bias"], eps)
        h = F.linear(
            F.gelu(F.linear(h, p[b + "mlp.fc1.weight"], p[b + "mlp.fc1.bias"])),
            p[b + "mlp.fc2.weight"],
            p[b + "mlp.fc2.bias"],
        )
        x = x + h
    return F.layer_norm(x, (width,), p["norm.weight"], p["norm.bias"], eps)


@pytest.fixture(scope="module")
def tokenizer():
    return build_word_tokenizer(WORDS, model_max_length=40)


def test_checkpoint_round_trip_in_the_original_layout(tmp_path, tokenizer):
    reward = small_reward(tokenizer)
    state = original_state(reward)
    torch.save(state, tmp_path / "ImageReward.pt")
    loaded = ImageReward.from_checkpoint(
        tmp_path / "ImageReward.pt", tokenizer, vision_heads=2, text_heads=2
    )
    assert loaded.vision.config.num_hidden_layers == 2 and loaded.text.config.hidden_size == 24
    pixels = torch.rand(3, 3, 40, 36)
    prompts = ["a red circle", "a photo of a cat", "painting"]
    assert srp_form(loaded) == "difference"
    assert torch.allclose(loaded.score(pixels, prompts), reward.score(pixels, prompts), atol=1e-5)
    # BLIP's own ViT, from the original keys, gives the image tokens the text attends to
    inputs = loaded.preprocess(pixels)
    ours = loaded.vision(pixel_values=inputs).last_hidden_state
    assert torch.allclose(ours, blip_vit(state, inputs), atol=1e-5)


def test_score_is_imagereward_normalised_and_prompt_dependent(tokenizer):
    reward = small_reward(tokenizer)
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        image = reward.vision(pixel_values=reward.preprocess(pixels)).last_hidden_state
        tokens = tokenizer(
            ["a cat", "a dog"], padding="max_length", max_length=35, return_tensors="pt"
        )
        hidden = reward.text(
            input_ids=tokens["input_ids"],
            attention_mask=tokens["attention_mask"],
            encoder_hidden_states=image,
        ).last_hidden_state[:, 0]
        expected = (reward.mlp(hidden).squeeze(-1) - REWARD_MEAN) / REWARD_STD
    scores = reward.score(pixels, ["a cat", "a dog"])
    assert torch.allclose(scores, expected, atol=1e-5)
    assert not torch.allclose(reward.score(pixels, ["a cat", "a cat"]), scores)


def test_gradient_reaches_the_pixels_only(tokenizer):
    reward = small_reward(tokenizer)
    pixels = torch.rand(2, 3, 32, 32, requires_grad=True)
    reward.score(pixels, ["a cat", "a dog"]).sum().backward()
    assert pixels.grad.abs().sum() > 0
    assert all(p.grad is None for p in reward.parameters())


def test_missing_and_foreign_keys_are_named(tmp_path, tokenizer):
    state = original_state(small_reward(tokenizer))
    state.pop("mlp.layers.7.bias")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(
        ValueError, match=r"missing keys: mlp\.layers\.7\.bias.*unexpected keys: extra"
    ):
        ImageReward.from_checkpoint(tmp_path / "bad.pt", tokenizer, 2, 2)
    torch.save({"mlp.layers.0.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an ImageReward checkpoint"):
        ImageReward.from_checkpoint(tmp_path / "other.pt", tokenizer)
    with pytest.raises(FileNotFoundError, match="neither a local file nor downloadable"):
        load_reward("imagereward")
