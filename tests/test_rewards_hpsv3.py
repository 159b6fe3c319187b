"""HPSv3 from a random small Qwen2-VL config, through its checkpoint's key layout."""

import pytest
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import (
    AutoTokenizer,
    PreTrainedTokenizerFast,
    Qwen2VLConfig,
    Qwen2VLImageProcessor,
)

from srpo.rewards import load_reward, srp_form
from srpo.rewards.hpsv3 import (
    IMAGE_MEAN,
    IMAGE_STD,
    INSTRUCTION,
    REWARD_TOKEN,
    HPSv3Reward,
    hpsv3_text,
    patchify,
)
from tests.factories import WORDS

SPECIALS = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"]
PIXELS = 4 * 28 * 28  # 56 x 56: a 4 x 4 patch grid, 4 image tokens after merging


def base_tokenizer():
    words = set(WORDS) | set(INSTRUCTION.lower().split()) | {"system", "user", "assistant"}
    vocab = {"<pad>": 0, "<unk>": 1}
    for word in sorted(words):
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>")
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIALS})
    return tokenizer


def small_config(tokenizer, vocab_size):
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIALS}
    return Qwen2VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3]},
        },
        vision_config={
            "depth": 1,
            "embed_dim": 32,
            "hidden_size": 32,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "temporal_patch_size": 2,
            "spatial_merge_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|vision_end|>"] + 100,
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A Qwen2-VL base folder (config, tokenizer without <|Reward|>) and a reward on it."""
    folder = tmp_path_factory.mktemp("qwen2vl")
    tokenizer = base_tokenizer()
    tokenizer.save_pretrained(folder)
    small_config(tokenizer, len(tokenizer) + 1).save_pretrained(folder)
    torch.manual_seed(0)
    reward_tokenizer = HPSv3Reward.prepare_tokenizer(AutoTokenizer.from_pretrained(folder))
    config = Qwen2VLConfig.from_pretrained(folder)
    return folder, HPSv3Reward.build(config, reward_tokenizer, pixels=PIXELS)


def upstream_state(reward):
    """The reward's weights as HPSv3.safetensors holds them (transformers 4.45 layout)."""
    state = {}
    for key, value in reward.model.state_dict().items():
        if key.startswith("language_model."):
            key = "model." + key.removeprefix("language_model.")
        state[key] = value.clone().contiguous()
    rows, width = reward.model.language_model.embed_tokens.weight.shape
    state["lm_head.weight"] = torch.randn(rows, width)
    for key, value in reward.rm_head.state_dict().items():
        state[f"rm_head.{key}"] = value.clone().contiguous()
    return state


def test_patches_match_qwen2vl_image_processor():
    pixels = torch.rand(2, 3, 56, 84)
    processor = Qwen2VLImageProcessor(
        do_resize=False, do_rescale=False, image_mean=IMAGE_MEAN, image_std=IMAGE_STD
    )
    out = processor(images=list(pixels), return_tensors="pt")
    normalised = (pixels - torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        IMAGE_STD
    ).view(1, 3, 1, 1)
    ours = patchify(normalised, 14, 2, 2)
    assert out["image_grid_thw"].tolist() == [[1, 4, 6], [1, 4, 6]]
    assert torch.allclose(ours, out["pixel_values"].float(), atol=1e-5)


def test_checkpoint_round_trip_in_the_upstream_layout(tmp_path, base):
    folder, reward = base
    save_file(upstream_state(reward), tmp_path / "HPSv3.safetensors")
    loaded = HPSv3Reward.from_checkpoint(tmp_path / "HPSv3.safetensors", base=folder, pixels=PIXELS)
    assert loaded.reward_token_id == reward.reward_token_id == len(base_tokenizer())
    assert srp_form(loaded) == "difference"
    pixels = torch.rand(3, 3, 64, 48)
    prompts = ["a red circle", "a photo of a cat on a square", "painting"]
    assert torch.allclose(loaded.score(pixels, prompts), reward.score(pixels, prompts), atol=1e-5)
    # a base folder holding the checkpoint loads by name (default pixels: 448 x 448 squares)
    (folder / "HPSv3.safetensors").write_bytes((tmp_path / "HPSv3.safetensors").read_bytes())
    by_name = load_reward("hpsv3", folder)
    assert by_name.size(720, 720) == (448, 448)


def test_reward_token_hidden_state_is_read_and_padding_does_not_matter(base):
    _, reward = base
    ids = reward.tokenizer(hpsv3_text("a cat"), add_special_tokens=False)["input_ids"]
    assert ids.count(reward.reward_token_id) == 1 and ids.count(reward.image_token_id) == 1
    pixels = torch.rand(2, 3, 56, 56)
    prompts = ["a cat", "a photo of a red circle on a blue square"]
    together = reward.score(pixels, prompts)
    alone = torch.cat([reward.score(pixels[i : i + 1], prompts[i : i + 1]) for i in range(2)])
    assert torch.allclose(together, alone, atol=1e-5)
    assert not torch.allclose(reward.score(pixels, prompts[::-1]), together)


def test_gradient_reaches_the_pixels_only(base):
    _, reward = base
    pixels = torch.rand(2, 3, 60, 60, requires_grad=True)
    reward.score(pixels, ["a cat", "a dog"]).sum().backward()
    assert pixels.grad.abs().sum() > 0
    assert all(p.grad is None for p in reward.parameters())


def test_a_checkpoint_without_the_head_is_a_clear_error(tmp_path, base):
    folder, reward = base
    state = {k: v for k, v in upstream_state(reward).items() if not k.startswith("rm_head")}
    save_file(state, tmp_path / "backbone.safetensors")
    with pytest.raises(ValueError, match="not an HPSv3 checkpoint"):
        HPSv3Reward.from_checkpoint(tmp_path / "backbone.safetensors", base=folder)
    assert REWARD_TOKEN not in base_tokenizer().get_vocab()


def test_the_head_stays_float32_when_the_backbone_is_cast(base):
    import copy

    _, reward = base
    cast = copy.deepcopy(reward).to(torch.bfloat16)
    assert cast.rm_head[0].weight.dtype == torch.float32
    assert cast.model.language_model.embed_tokens.weight.dtype == torch.bfloat16
    assert torch.isfinite(cast.score(torch.rand(1, 3, 56, 56), ["a cat"])).all()
