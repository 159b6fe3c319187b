"""The tiny world's model configs: the same classes as the real world, only small.

Generator: diffusers ``FluxTransformer2DModel`` on a diffusers ``AutoencoderKL`` latent
(8 channels at 1/4 resolution), conditioned on its own CLIP-style text tower. Reward: a
transformers ``CLIPModel`` dual encoder, used through the same ``CLIPReward`` as PickScore.
Both text towers share one word-level tokenizer built from the world's vocabulary.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from diffusers import AutoencoderKL, FluxTransformer2DModel
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel

from srpo.tiny_world.tokenizer import BOS_ID, EOS_ID, PAD_ID, build_word_tokenizer
from srpo.tiny_world.world import vocabulary

MAX_TOKENS = 20

VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [16, 32, 32],
    "layers_per_block": 1,
    "latent_channels": 8,
    "norm_num_groups": 4,
    "sample_size": 64,
    "mid_block_add_attention": False,
}

TRANSFORMER_CONFIG = {
    "patch_size": 1,
    "in_channels": 32,
    "num_layers": 2,
    "num_single_layers": 2,
    "attention_head_dim": 32,
    "num_attention_heads": 4,
    "joint_attention_dim": 128,
    "pooled_projection_dim": 128,
    "guidance_embeds": False,
    "axes_dims_rope": [8, 12, 12],
}


def tokenizer():
    """The word-level tokenizer of the world's vocabulary (built offline, deterministic)."""
    return build_word_tokenizer(vocabulary(), model_max_length=MAX_TOKENS)


def _text_config(hidden: int, layers: int) -> dict:
    return {
        "vocab_size": len(tokenizer()),
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "max_position_embeddings": MAX_TOKENS,
        "eos_token_id": EOS_ID,
        "bos_token_id": BOS_ID,
        "pad_token_id": PAD_ID,
        "projection_dim": hidden,
    }


TEXT_ENCODER_CONFIG = _text_config(128, 2)
REWARD_CONFIG = {
    "text_config": _text_config(128, 2),
    "vision_config": {
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "image_size": 64,
        "patch_size": 8,
    },
    "projection_dim": 128,
}
REWARD_MEAN = (0.5, 0.5, 0.5)
REWARD_STD = (0.25, 0.25, 0.25)


def build_vae() -> AutoencoderKL:
    return AutoencoderKL(**VAE_CONFIG)


def build_transformer() -> FluxTransformer2DModel:
    return FluxTransformer2DModel(**TRANSFORMER_CONFIG)


def build_text_encoder() -> CLIPTextModel:
    return CLIPTextModel(CLIPTextConfig(**TEXT_ENCODER_CONFIG))


def build_reward_model() -> CLIPModel:
    return CLIPModel(CLIPConfig(**REWARD_CONFIG))


class TinyPromptEncoder:
    """The generator's text tower behind the prompt-encoder protocol.

    Sequence: last hidden states (padded to ``MAX_TOKENS``); pooled: the end-token state.
    """

    def __init__(self, text_encoder: CLIPTextModel, tok=None) -> None:
        self.text_encoder = text_encoder
        self.tokenizer = tok or tokenizer()
        self._warned = False

    def tokens(self, prompts: Sequence[str]) -> torch.Tensor:
        """Token ids ``[B, MAX_TOKENS]``; longer prompts are truncated with one warning."""
        lengths = [len(ids) for ids in self.tokenizer(list(prompts)).input_ids]
        if not self._warned and max(lengths) > MAX_TOKENS:
            self._warned = True
            warnings.warn(f"prompts longer than {MAX_TOKENS} tokens were truncated", stacklevel=2)
        return self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=MAX_TOKENS,
            truncation=True,
            return_tensors="pt",
        ).input_ids

    def forward_ids(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequence and pooled embeddings of token ids (with gradients if enabled)."""
        out = self.text_encoder(ids.to(self.text_encoder.device))
        return out.last_hidden_state, out.pooler_output

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_ids(self.tokens(prompts))
