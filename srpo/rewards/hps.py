"""HPSv2 / HPSv2.1: an open_clip ViT-H-14 fine-tuned on human preferences.

Checkpoints are the files the ``hpsv2`` package uses (``HPS_v2_compressed.pt``,
``HPS_v2.1_compressed.pt`` in the hub repo ``xswu/HPSv2``) or any local file in that format;
the ``hpsv2`` package itself is not needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import open_clip
import torch

from srpo.rewards.base import ImagePreprocess, RewardModel, TextCoverage, tokenizer_coverage
from srpo.rewards.checkpoints import load_into, load_state_dict, resolve_file

HPS_HUB_REPO = "xswu/HPSv2"
HPS_FILES = {"hpsv2": "HPS_v2_compressed.pt", "hpsv2.1": "HPS_v2.1_compressed.pt"}
HPS_ARCH = "ViT-H-14"


class HPSReward(RewardModel):
    """HPS score: cosine of open_clip image and text embeddings (scale 1)."""

    name = "hps"

    def __init__(self, model: torch.nn.Module, tokenizer, name: str = "hps") -> None:
        cfg = model.visual.preprocess_cfg
        size = cfg["size"] if isinstance(cfg["size"], int) else min(cfg["size"])
        super().__init__(ImagePreprocess(size, cfg["mean"], cfg["std"]), scale=1.0)
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.freeze()

    @classmethod
    def from_checkpoint(
        cls, checkpoint: str | Path, arch: str = HPS_ARCH, name: str = "hps"
    ) -> HPSReward:
        """Build ``arch`` with random weights and load an HPS checkpoint (file or hub name)."""
        path = resolve_file(checkpoint, HPS_HUB_REPO)
        model = open_clip.create_model(arch, pretrained=None, load_weights=False)
        load_into(model, load_state_dict(path), str(path))
        return cls(model, open_clip.get_tokenizer(arch), name=name)

    def text_coverage(self, text: str) -> TextCoverage:
        """How the tokenizer reads ``text``: its length against the context length."""
        return tokenizer_coverage(self.tokenizer, text, self.tokenizer.context_length)

    def _tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        limit = self.tokenizer.context_length
        if hasattr(self.tokenizer, "encode"):
            too_long = [t for t in texts if len(self.tokenizer.encode(t)) + 2 > limit]
            if too_long:
                self._warn_truncated(too_long, limit)
        return {"text": self.tokenizer(list(texts)).to(self.device)}

    def _text_features(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.encode_text(tokens["text"])

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)
