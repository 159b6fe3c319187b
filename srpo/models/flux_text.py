"""FLUX's two text encoders: CLIP-L gives the pooled vector, T5 the token sequence."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoTokenizer, CLIPTextModel, T5EncoderModel


class FluxTextEncoders:
    """Encode prompts the way ``FluxPipeline`` does: T5 sequence + CLIP pooled output."""

    def __init__(
        self,
        tokenizer,
        text_encoder: torch.nn.Module,
        tokenizer_2,
        text_encoder_2: torch.nn.Module,
        max_sequence_length: int = 512,
    ) -> None:
        self.tokenizer, self.text_encoder = tokenizer, text_encoder.eval().requires_grad_(False)
        self.tokenizer_2, self.text_encoder_2 = (
            tokenizer_2,
            text_encoder_2.eval().requires_grad_(False),
        )
        self.max_sequence_length = max_sequence_length
        self._warned = False

    @classmethod
    def from_pretrained(
        cls, source: str | Path, dtype: torch.dtype = torch.bfloat16, max_sequence_length: int = 512
    ) -> FluxTextEncoders:
        """Load both encoders and tokenizers from a FLUX folder or hub id."""
        source = str(source)
        return cls(
            AutoTokenizer.from_pretrained(source, subfolder="tokenizer"),
            CLIPTextModel.from_pretrained(source, subfolder="text_encoder", torch_dtype=dtype),
            AutoTokenizer.from_pretrained(source, subfolder="tokenizer_2"),
            T5EncoderModel.from_pretrained(source, subfolder="text_encoder_2", torch_dtype=dtype),
            max_sequence_length,
        )

    def _ids(self, tokenizer, prompts: list[str], max_length: int) -> torch.Tensor:
        full = tokenizer(prompts, truncation=False)["input_ids"]
        if not self._warned and any(len(ids) > max_length for ids in full):
            self._warned = True
            warnings.warn(f"prompts longer than {max_length} tokens were truncated", stacklevel=3)
        return tokenizer(
            prompts,
            padding="max_length",
            max_length=max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        prompts = list(prompts)
        clip_len = min(self.tokenizer.model_max_length, 77)
        clip_ids = self._ids(self.tokenizer, prompts, clip_len).to(self.text_encoder.device)
        pooled = self.text_encoder(clip_ids, output_hidden_states=False).pooler_output
        t5_ids = self._ids(self.tokenizer_2, prompts, self.max_sequence_length)
        sequence = self.text_encoder_2(t5_ids.to(self.text_encoder_2.device))[0]
        return sequence, pooled
