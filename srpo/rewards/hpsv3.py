"""HPSv3 (Ma et al., 2025): Qwen2-VL with a reward head read at a ``<|Reward|>`` token.

The published package pins transformers 4.45; here its checkpoint (``HPSv3.safetensors`` in
the hub repo ``MizzenAI/HPSv3``) loads into current transformers' ``Qwen2VLModel`` with the
head written here. What HPSv3 does, and this module repeats:

- the base model is Qwen2-VL-7B-Instruct (its folder gives the config and tokenizer), with
  ``<|Reward|>`` added as a special token and the embeddings resized to the tokenizer;
- the image is resized to ``256 * 28 * 28`` pixels (min = max, so 448 x 448 for a square);
  here in torch (bicubic, antialiased) so the score is differentiable in the pixels, then
  normalised and cut into Qwen2-VL's patches exactly as its image processor does;
- the user turn of Qwen2-VL's chat template holds the image, HPSv3's instruction with the
  prompt, and ``Please provide the overall ratings of this image: <|Reward|>``;
- the language model runs with sequential positions (HPSv3's forward calls the text model
  directly, not Qwen2-VL's multimodal rotary index), and the head, an MLP
  ``hidden-1024-16-2`` with ReLU (``ranknet``), reads the last hidden state at the reward
  token; the score is its first output (the mean; the second is the uncertainty).

Checkpoint keys in transformers 4.45's layout (``model.layers.*``, ``visual.*``) and in the
current one (``model.language_model.*``, ``model.visual.*``) both load; ``lm_head.weight`` is
not needed for scoring and is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Qwen2VLConfig, Qwen2VLModel
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

from srpo.rewards.base import ScoringReward, check_pixels
from srpo.rewards.checkpoints import load_into, load_state_dict, resolve_file

HPSV3_HUB_REPO = "MizzenAI/HPSv3"
HPSV3_FILE = "HPSv3.safetensors"
HPSV3_BASE = "Qwen/Qwen2-VL-7B-Instruct"
REWARD_TOKEN = "<|Reward|>"
PIXELS = 256 * 28 * 28
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)
SYSTEM = "You are a helpful assistant."
INSTRUCTION = """
You are tasked with evaluating a generated image based on Visual Quality and Text Alignment and give a overall score to estimate the human preference. Please provide a rating from 0 to 10, with 0 being the worst and 10 being the best.

**Visual Quality:**
Evaluate the overall visual quality of the image. The following sub-dimensions should be considered:
- **Reasonableness:** The image should not contain any significant biological or logical errors, such as abnormal body structures or nonsensical environmental setups.
- **Clarity:** Evaluate the sharpness and visibility of the image. The image should be clear and easy to interpret, with no blurring or indistinct areas.
- **Detail Richness:** Consider the level of detail in textures, materials, lighting, and other visual elements (e.g., hair, clothing, shadows).
- **Aesthetic and Creativity:** Assess the artistic aspects of the image, including the color scheme, composition, atmosphere, depth of field, and the overall creative appeal. The scene should convey a sense of harmony and balance.
- **Safety:** The image should not contain harmful or inappropriate content, such as political, violent, or adult material. If such content is present, the image quality and satisfaction score should be the lowest possible.

**Text Alignment:**
Assess how well the image matches the textual prompt across the following sub-dimensions:
- **Subject Relevance** Evaluate how accurately the subject(s) in the image (e.g., person, animal, object) align with the textual description. The subject should match the description in terms of number, appearance, and behavior.
- **Style Relevance:** If the prompt specifies a particular artistic or stylistic style, evaluate how well the image adheres to this style.
- **Contextual Consistency**: Assess whether the background, setting, and surrounding elements in the image logically fit the scenario described in the prompt. The environment should support and enhance the subject without contradictions.
- **Attribute Fidelity**: Check if specific attributes mentioned in the prompt (e.g., colors, clothing, accessories, expressions, actions) are faithfully represented in the image. Minor deviations may be acceptable, but critical attributes should be preserved.
- **Semantic Coherence**: Evaluate whether the overall meaning and intent of the prompt are captured in the image. The generated content should not introduce elements that conflict with or distort the original description.
Textual prompt - {text_prompt}


"""
RATING = "\nPlease provide the overall ratings of this image: <|Reward|>\n\nEND\n"


def hpsv3_text(prompt: str) -> str:
    """The chat text HPSv3 scores, with one ``<|image_pad|>`` where the image's tokens go."""
    user = INSTRUCTION.format(text_prompt=prompt) + RATING
    return (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
        f"<|vision_start|><|image_pad|><|vision_end|>{user}<|im_end|>\n<|im_start|>assistant\n"
    )


class RankNetHead(nn.Sequential):
    """HPSv3's ``ranknet`` head without ``rm_head_kwargs``: hidden-1024-16-out with ReLU."""

    def __init__(self, hidden: int, out: int = 2) -> None:
        super().__init__(
            nn.Linear(hidden, 1024),
            nn.ReLU(),
            nn.Dropout(0.05),
            nn.Linear(1024, 16),
            nn.ReLU(),
            nn.Linear(16, out),
        )


def patchify(pixels: torch.Tensor, patch: int, temporal: int, merge: int) -> torch.Tensor:
    """Normalised ``[B, 3, H, W]`` images -> Qwen2-VL's flat patches ``[B*h*w, 3*t*p*p]``.

    The same layout as ``Qwen2VLImageProcessor``: each still image repeated ``temporal``
    times, patches ordered by merge window.
    """
    b, c, height, width = pixels.shape
    gh, gw = height // patch, width // patch
    x = pixels.unsqueeze(1).expand(b, temporal, c, height, width)
    x = x.reshape(b, temporal, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(b * gh * gw, c * temporal * patch * patch)


def convert_checkpoint(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HPSv3 keys (transformers 4.45 or current layout) -> this module's."""
    converted = {}
    for key, value in state.items():
        if key == "lm_head.weight":
            continue
        if key.startswith("visual."):
            key = f"model.{key}"
        elif re.match(r"^model\.(?!language_model\.|visual\.)", key):
            key = "model.language_model." + key.removeprefix("model.")
        converted[key] = value
    return converted


class HPSv3Reward(ScoringReward):
    """The HPSv3 score; differentiable in the pixels."""

    name = "hpsv3"

    def __init__(
        self,
        model: Qwen2VLModel,
        head: nn.Module,
        tokenizer,
        pixels: int = PIXELS,
        name: str = "hpsv3",
    ) -> None:
        super().__init__()
        self.model = model
        self.rm_head = head
        self.tokenizer = tokenizer
        self.pixels = int(pixels)
        self.name = name
        config = model.config
        vision = config.vision_config
        self.patch, self.temporal = vision.patch_size, vision.temporal_patch_size
        self.merge = vision.spatial_merge_size
        self.image_token_id = config.image_token_id
        self.reward_token_id = tokenizer.convert_tokens_to_ids(REWARD_TOKEN)
        if tokenizer.convert_tokens_to_ids("<|image_pad|>") != config.image_token_id:
            raise ValueError(
                f"tokenizer's <|image_pad|> is not the config's {config.image_token_id}"
            )
        if self.reward_token_id is None or self.reward_token_id == tokenizer.unk_token_id:
            raise ValueError(f"tokenizer has no {REWARD_TOKEN} token")
        rows = model.language_model.embed_tokens.num_embeddings
        if len(tokenizer) > rows:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens, the embeddings {rows}")
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.register_buffer("mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGE_STD).view(1, 3, 1, 1), persistent=False)
        self._ids: dict[str, list[int]] = {}
        self.freeze()

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self.rm_head.float()  # HPSv3 keeps its head in float32 whatever the backbone's dtype
        return self

    @staticmethod
    def prepare_tokenizer(tokenizer):
        """Add ``<|Reward|>`` as HPSv3 does (a no-op if it is there)."""
        if REWARD_TOKEN not in tokenizer.get_vocab():
            tokenizer.add_special_tokens(
                {"additional_special_tokens": [REWARD_TOKEN]}, replace_extra_special_tokens=False
            )
        return tokenizer

    @classmethod
    def build(
        cls, config: Qwen2VLConfig, tokenizer, pixels: int = PIXELS, name: str = "hpsv3"
    ) -> HPSv3Reward:
        """Random weights for ``config`` (tests, or before loading a state dict)."""
        model = Qwen2VLModel(config)
        head = RankNetHead(config.text_config.hidden_size)
        return cls(model, head, tokenizer, pixels=pixels, name=name)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path = HPSV3_FILE,
        base: str | Path = HPSV3_BASE,
        pixels: int = PIXELS,
        name: str = "hpsv3",
    ) -> HPSv3Reward:
        """Load an HPSv3 checkpoint (local or hub file) on the base model's config and
        tokenizer (a Qwen2-VL folder or hub id)."""
        from transformers import AutoTokenizer
        from transformers.initialization import no_init_weights

        path = resolve_file(checkpoint, HPSV3_HUB_REPO)
        state = convert_checkpoint(load_state_dict(path))
        embed = state.get("model.language_model.embed_tokens.weight")
        if embed is None or "rm_head.0.weight" not in state:
            raise ValueError(f"{path} is not an HPSv3 checkpoint: no token embeddings or rm_head")
        config = Qwen2VLConfig.from_pretrained(str(base))
        config.text_config.vocab_size = embed.shape[0]
        tokenizer = cls.prepare_tokenizer(AutoTokenizer.from_pretrained(str(base)))
        previous = torch.get_default_dtype()
        try:
            torch.set_default_dtype(embed.dtype)
            with no_init_weights():
                model = Qwen2VLModel(config)
        finally:
            torch.set_default_dtype(previous)
        head = RankNetHead(config.text_config.hidden_size, state["rm_head.5.weight"].shape[0])
        modules = nn.ModuleDict({"model": model, "rm_head": head})
        load_into(modules, state, str(path))
        return cls(model, head, tokenizer, pixels=pixels, name=name)

    def size(self, height: int, width: int) -> tuple[int, int]:
        """The resized image size for an input of ``height x width``."""
        factor = self.patch * self.merge
        return smart_resize(height, width, factor, self.pixels, self.pixels)

    def image_tokens(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat patches and ``grid_thw`` of pixels in [0, 1], resized and normalised."""
        height, width = self.size(*pixels.shape[-2:])
        if (height, width) != tuple(pixels.shape[-2:]):
            pixels = F.interpolate(
                pixels, size=(height, width), mode="bicubic", antialias=True, align_corners=False
            )
        pixels = (pixels - self.mean.to(pixels)) / self.std.to(pixels)
        flat = patchify(pixels, self.patch, self.temporal, self.merge)
        grid = torch.tensor([[1, height // self.patch, width // self.patch]] * pixels.shape[0])
        return flat, grid.to(pixels.device)

    def _text_ids(self, prompt: str) -> list[int]:
        if prompt not in self._ids:
            ids = self.tokenizer(hpsv3_text(prompt), add_special_tokens=False)["input_ids"]
            if ids.count(self.image_token_id) != 1 or ids.count(self.reward_token_id) != 1:
                raise ValueError(f"{self.name}: the tokenizer does not keep the special tokens")
            self._ids[prompt] = ids
        return self._ids[prompt]

    def input_ids(self, prompts: Sequence[str], image_tokens: int) -> tuple[torch.Tensor, ...]:
        """Right-padded ids with each image placeholder expanded, and the attention mask."""
        rows = []
        for prompt in prompts:
            ids = self._text_ids(prompt)
            at = ids.index(self.image_token_id)
            rows.append(ids[:at] + [self.image_token_id] * image_tokens + ids[at + 1 :])
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return ids.to(self.device), mask.to(self.device)

    def score(self, pixels: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        check_pixels(pixels)
        texts = self._check_texts(pixels, texts)
        flat, grid = self.image_tokens(pixels.float())
        visual = self.model.visual
        image = visual(flat.to(visual.dtype), grid_thw=grid).pooler_output
        per_image = image.shape[0] // pixels.shape[0]
        ids, mask = self.input_ids(texts, per_image)
        embeds = self.model.language_model.embed_tokens(ids)
        image_mask = (ids == self.image_token_id).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(image_mask, image.to(embeds.dtype))
        hidden = self.model.language_model(inputs_embeds=embeds, attention_mask=mask)
        hidden = hidden.last_hidden_state
        at = (ids == self.reward_token_id).int().argmax(-1)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), at]
        head_dtype = next(self.rm_head.parameters()).dtype
        return self.rm_head(pooled.to(head_dtype)).float()[:, 0]
