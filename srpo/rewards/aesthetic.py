"""The LAION aesthetic predictor: a head on CLIP ViT-L/14 image embeddings (no text).

Two published heads, told apart by their keys:

- the improved predictor (``sac+logos+ava1-l14-linearMSE.pth``, also in the hub repo
  ``trl-lib/ddpo-aesthetic-predictor`` as ``aesthetic-model.pth``): an MLP 768-1024-128-64-16-1
  with dropout, keys ``layers.{0,2,4,6,7}.*``;
- the first one (``sa_0_4_vit_l_14_linear.pth``): one linear layer, keys ``weight``, ``bias``.

Either reads the L2-normalised projected CLIP image embedding (the vision tower and
projection of a transformers ``CLIPModel``, e.g. ``openai/clip-vit-large-patch14``) and gives a
score of about 1-10. The score ignores the text, so SRP's difference form reduces to ``k * r(x)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoImageProcessor, CLIPModel

from srpo.rewards.base import ImagePreprocess, ScoringReward
from srpo.rewards.checkpoints import load_into, load_state_dict, resolve_file

AESTHETIC_HUB_REPO = "trl-lib/ddpo-aesthetic-predictor"
AESTHETIC_FILE = "aesthetic-model.pth"
AESTHETIC_CLIP = "openai/clip-vit-large-patch14"


class AestheticMLP(nn.Module):
    """The improved aesthetic predictor's MLP (its state dict keys are ``layers.*``)."""

    def __init__(self, dim: int = 768) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(dim, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.layers(embeds)


def aesthetic_head(state: Mapping[str, torch.Tensor]) -> nn.Module:
    """The head a checkpoint's keys describe (MLP or linear), with random weights."""
    if "layers.0.weight" in state:
        return AestheticMLP(state["layers.0.weight"].shape[1])
    if set(state) == {"weight", "bias"}:
        return nn.Linear(state["weight"].shape[1], state["weight"].shape[0])
    raise ValueError(
        "not an aesthetic predictor head: expected keys layers.0.weight, ... (MLP) or "
        f"weight, bias (linear), got {', '.join(sorted(state)[:5])}"
    )


class AestheticReward(ScoringReward):
    """``head(normalize(CLIP image embedding))``; differentiable in the pixels."""

    name = "aesthetic"

    def __init__(
        self,
        vision: nn.Module,
        projection: nn.Module,
        head: nn.Module,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        image_size: int,
        name: str = "aesthetic",
    ) -> None:
        super().__init__()
        self.preprocess = ImagePreprocess(image_size, image_mean, image_std)
        self.vision = vision
        self.projection = projection
        self.head = head
        self.name = name
        self.freeze()

    @classmethod
    def from_pretrained(
        cls,
        head: str | Path = AESTHETIC_FILE,
        clip: str | Path = AESTHETIC_CLIP,
        name: str = "aesthetic",
    ) -> AestheticReward:
        """Load the head (local file or hub file) and the CLIP vision tower (folder or hub id)."""
        state = load_state_dict(resolve_file(head, AESTHETIC_HUB_REPO))
        module = aesthetic_head(state)
        load_into(module, state, str(head))
        model = CLIPModel.from_pretrained(str(clip))
        processor = AutoImageProcessor.from_pretrained(str(clip))
        crop = processor.crop_size
        size = int(crop if isinstance(crop, int) else crop["height"])
        return cls(
            model.vision_model,
            model.visual_projection,
            module,
            processor.image_mean,
            processor.image_std,
            size,
            name=name,
        )

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """L2-normalised CLIP image embeddings ``[B, D]`` (differentiable)."""
        inputs = self.preprocess(pixels).to(next(self.vision.parameters()).dtype)
        pooled = self.vision(pixel_values=inputs).pooler_output
        return F.normalize(self.projection(pooled).float(), dim=-1)

    def score(self, pixels: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        self._check_texts(pixels, texts)
        embeds = self.embed(pixels)
        head_dtype = next(self.head.parameters()).dtype
        return self.head(embeds.to(head_dtype)).float().squeeze(-1)
