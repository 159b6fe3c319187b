"""CLIP and PickScore rewards on transformers' ``CLIPModel``.

PickScore is a CLIP-H fine-tuned on Pick-a-Pic; its score is the cosine scaled by the
model's logit scale. Plain CLIP scores with the cosine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

from srpo.rewards.base import ImagePreprocess, RewardModel, TextCoverage, tokenizer_coverage

PICKSCORE_MODEL = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
CLIP_MODEL = "openai/clip-vit-large-patch14"


class CLIPReward(RewardModel):
    """Cosine (``scale_by_logit=False``) or logit-scaled cosine (PickScore) of CLIP features."""

    name = "clip"

    def __init__(
        self,
        model: CLIPModel,
        tokenizer,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        image_size: int,
        scale_by_logit: bool = False,
        name: str = "clip",
    ) -> None:
        scale = float(model.logit_scale.detach().exp()) if scale_by_logit else 1.0
        super().__init__(ImagePreprocess(image_size, image_mean, image_std), scale=scale)
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.freeze()

    @classmethod
    def from_pretrained(
        cls,
        model_path: str | Path,
        processor_path: str | Path | None = None,
        scale_by_logit: bool = False,
        name: str = "clip",
    ) -> CLIPReward:
        """Load a ``CLIPModel``, its tokenizer and image processor from folders or hub ids."""
        model = CLIPModel.from_pretrained(str(model_path))
        processor_source = str(processor_path or model_path)
        image = AutoImageProcessor.from_pretrained(processor_source)
        crop = image.crop_size
        size = int(crop if isinstance(crop, int) else crop["height"])
        return cls(
            model,
            AutoTokenizer.from_pretrained(processor_source),
            image.image_mean,
            image.image_std,
            size,
            scale_by_logit=scale_by_logit,
            name=name,
        )

    def _limit(self) -> int:
        return min(
            self.tokenizer.model_max_length, self.model.config.text_config.max_position_embeddings
        )

    def text_coverage(self, text: str) -> TextCoverage:
        """How the tokenizer reads ``text``: its length against the limit, unknown words."""
        return tokenizer_coverage(self.tokenizer, text, self._limit())

    def _tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        limit = self._limit()
        lengths = [len(ids) for ids in self.tokenizer(list(texts), truncation=False)["input_ids"]]
        too_long = [t for t, n in zip(texts, lengths, strict=True) if n > limit]
        if too_long:
            self._warn_truncated(too_long, limit)
        tokens = self.tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=limit,
            return_tensors="pt",
        )
        return {
            k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")
        }

    def _text_features(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.get_text_features(**tokens).pooler_output

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.get_image_features(pixel_values=pixels).pooler_output
