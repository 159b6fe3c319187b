"""ImageReward (Xu et al., 2023): BLIP's image-grounded text encoder with an MLP head.

The published package pins old transformers and timm; here its checkpoint file
(``ImageReward.pt`` in the hub repo ``THUDM/ImageReward``) loads into current transformers
classes: BLIP's ViT is ``BlipVisionModel`` and its med BERT with cross-attention is
``BlipTextModel``, with keys renamed as transformers' own BLIP conversion does. The head and
the score are ImageReward's: ``(mlp(h_[CLS]) - 0.16717) / 1.03334``, where ``h_[CLS]`` is the
text encoder's first hidden state with the image's ViT tokens as cross-attention memory; the
prompt is BERT-tokenized (bert-base-uncased plus BLIP's ``[DEC]`` and ``[ENC]`` tokens), padded
to 35 tokens. Images are resized (short side), center-cropped to 224 and normalised with
CLIP's mean and std, in torch so the score is differentiable in the pixels.

The architecture is read from the checkpoint's shapes (head counts assume 64-dim heads, as in
ViT-L and BERT-base, unless given). Keys of BLIP parts the score does not use
(``vision_proj``, ``text_proj``, ...) are ignored; missing or misshaped keys of the parts it
uses are an error naming them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn
from transformers import BlipTextConfig, BlipVisionConfig, BlipVisionModel
from transformers.models.blip.modeling_blip_text import BlipTextModel

from srpo.rewards.aesthetic import AestheticMLP
from srpo.rewards.base import ImagePreprocess, ScoringReward, TextCoverage, tokenizer_coverage
from srpo.rewards.checkpoints import load_into, load_state_dict, resolve_file

IMAGEREWARD_HUB_REPO = "THUDM/ImageReward"
IMAGEREWARD_FILE = "ImageReward.pt"
IMAGEREWARD_TOKENIZER = "bert-base-uncased"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
REWARD_MEAN, REWARD_STD = 0.16717362830052426, 1.0333394966054072
MAX_LENGTH = 35

_VISION_RENAMES = (
    (r"^cls_token$", "embeddings.class_embedding"),
    (r"^pos_embed$", "embeddings.position_embedding"),
    (r"^patch_embed\.proj\.", "embeddings.patch_embedding."),
    (r"^norm\.", "post_layernorm."),
    (r"^blocks\.", "encoder.layers."),
    (r"\.attn\.proj\.", ".self_attn.projection."),
    (r"\.attn\.qkv\.", ".self_attn.qkv."),
    (r"\.norm1\.", ".layer_norm1."),
    (r"\.norm2\.", ".layer_norm2."),
)


def convert_checkpoint(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ImageReward's keys -> this module's (``vision.*``, ``text.*``, ``mlp.*``)."""
    converted = {}
    for key, value in state.items():
        if key.startswith("blip.visual_encoder."):
            name = key.removeprefix("blip.visual_encoder.")
            for pattern, replacement in _VISION_RENAMES:
                name = re.sub(pattern, replacement, name)
            converted[f"vision.{name}"] = value
        elif key.startswith("blip.text_encoder."):
            name = key.removeprefix("blip.text_encoder.")
            if name != "embeddings.position_ids" and not name.startswith("pooler."):
                converted[f"text.{name}"] = value
        elif key.startswith("mlp."):
            converted[key] = value
        elif not key.startswith("blip."):
            converted[key] = value  # unknown: load_into names it
    return converted


def _count(state: Mapping[str, torch.Tensor], pattern: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def configs_from_state(
    state: Mapping[str, torch.Tensor],
    vision_heads: int | None = None,
    text_heads: int | None = None,
) -> tuple[BlipVisionConfig, BlipTextConfig]:
    """The BLIP vision and text configs a converted state dict's shapes describe."""
    try:
        position = state["vision.embeddings.position_embedding"]
        patch = state["vision.embeddings.patch_embedding.weight"]
        words = state["text.embeddings.word_embeddings.weight"]
        positions = state["text.embeddings.position_embeddings.weight"]
        cross = state["text.encoder.layer.0.crossattention.self.key.weight"]
        v_fc1 = state["vision.encoder.layers.0.mlp.fc1.weight"]
        t_fc1 = state["text.encoder.layer.0.intermediate.dense.weight"]
    except KeyError as error:
        raise ValueError(f"not an ImageReward checkpoint: no {error.args[0]}") from error
    width, grid = position.shape[-1], round((position.shape[1] - 1) ** 0.5)
    vision = BlipVisionConfig(
        hidden_size=width,
        intermediate_size=v_fc1.shape[0],
        num_hidden_layers=_count(state, r"vision\.encoder\.layers\.(\d+)\."),
        num_attention_heads=vision_heads or max(1, width // 64),
        image_size=grid * patch.shape[-1],
        patch_size=patch.shape[-1],
        layer_norm_eps=1e-6,
    )
    text = BlipTextConfig(
        vocab_size=words.shape[0],
        hidden_size=words.shape[1],
        encoder_hidden_size=cross.shape[1],
        intermediate_size=t_fc1.shape[0],
        num_hidden_layers=_count(state, r"text\.encoder\.layer\.(\d+)\."),
        num_attention_heads=text_heads or max(1, words.shape[1] // 64),
        max_position_embeddings=positions.shape[0],
        layer_norm_eps=1e-12,
        bos_token_id=None,
        sep_token_id=None,
        pad_token_id=0,
    )
    return vision, text


def imagereward_tokenizer(source: str | Path = IMAGEREWARD_TOKENIZER):
    """BLIP's tokenizer: BERT's, with ``[DEC]`` as bos and ``[ENC]`` added (vocab 30524)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source))
    if "[DEC]" not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"bos_token": "[DEC]"})
        tokenizer.add_tokens(["[ENC]"], special_tokens=True)
    return tokenizer


class ImageReward(ScoringReward):
    """ImageReward's score on transformers' BLIP towers; differentiable in the pixels."""

    name = "imagereward"

    def __init__(
        self,
        vision: BlipVisionModel,
        text: BlipTextModel,
        mlp: nn.Module,
        tokenizer,
        name: str = "imagereward",
    ) -> None:
        super().__init__()
        self.preprocess = ImagePreprocess(vision.config.image_size, CLIP_MEAN, CLIP_STD)
        self.vision = vision
        self.text = text
        self.mlp = mlp
        self.tokenizer = tokenizer
        self.name = name
        self._tokens: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.freeze()

    @classmethod
    def build(
        cls, vision: BlipVisionConfig, text: BlipTextConfig, tokenizer, name: str = "imagereward"
    ) -> ImageReward:
        """Random weights of the given configs (tests, or before loading a state dict)."""
        text.is_decoder = True  # BLIP's med BERT: every layer has cross-attention
        return cls(
            BlipVisionModel(vision),
            BlipTextModel(text, add_pooling_layer=False),
            AestheticMLP(text.hidden_size),
            tokenizer,
            name=name,
        )

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path = IMAGEREWARD_FILE,
        tokenizer=IMAGEREWARD_TOKENIZER,
        vision_heads: int | None = None,
        text_heads: int | None = None,
        name: str = "imagereward",
    ) -> ImageReward:
        """Load ``ImageReward.pt`` (local or hub file); ``tokenizer`` a tokenizer or its source."""
        path = resolve_file(checkpoint, IMAGEREWARD_HUB_REPO)
        state = convert_checkpoint(load_state_dict(path))
        if isinstance(tokenizer, str | Path):
            tokenizer = imagereward_tokenizer(tokenizer)
        reward = cls.build(*configs_from_state(state, vision_heads, text_heads), tokenizer, name)
        modules = nn.ModuleDict({"vision": reward.vision, "text": reward.text, "mlp": reward.mlp})
        load_into(modules, state, str(path))
        return reward

    def text_coverage(self, text: str) -> TextCoverage:
        """How BLIP's tokenizer reads ``text``: its length against ImageReward's 35 tokens."""
        return tokenizer_coverage(self.tokenizer, text, MAX_LENGTH)

    def _tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        missing = [t for t in dict.fromkeys(texts) if t not in self._tokens]
        if missing:
            tokens = self.tokenizer(
                missing,
                padding="max_length",
                truncation=True,
                max_length=MAX_LENGTH,
                return_tensors="pt",
            )
            for i, text in enumerate(missing):
                self._tokens[text] = (tokens["input_ids"][i], tokens["attention_mask"][i])
        ids = torch.stack([self._tokens[t][0] for t in texts]).to(self.device)
        mask = torch.stack([self._tokens[t][1] for t in texts]).to(self.device)
        return ids, mask

    def score(self, pixels: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        texts = self._check_texts(pixels, texts)
        dtype = next(self.vision.parameters()).dtype
        image = self.vision(pixel_values=self.preprocess(pixels).to(dtype)).last_hidden_state
        ids, mask = self._tokenize(texts)
        image_mask = torch.ones(image.shape[:-1], dtype=torch.long, device=image.device)
        hidden = self.text(
            input_ids=ids,
            attention_mask=mask,
            encoder_hidden_states=image,
            encoder_attention_mask=image_mask,
        ).last_hidden_state[:, 0]
        head_dtype = next(self.mlp.parameters()).dtype
        reward = self.mlp(hidden.to(head_dtype)).float().squeeze(-1)
        return (reward - REWARD_MEAN) / REWARD_STD
