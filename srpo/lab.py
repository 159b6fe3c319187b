"""Reward Lab: how a text-conditioned reward and its SRP form score a set of images.

The studio's Reward Lab calls these functions; they hold no state and know nothing of the
web or the database. Any reward works, in its SRP form (:func:`srpo.rewards.srp_form`): a
dual encoder encodes each distinct text once and embeds all images in one batched pass; any
other reward (a scorer with a head, a remote judge) scores every image under every text, and
SRP is the score difference ``(1 + k) r(pos. p) - r(neg. p)``, which equals the embedding form
for a dual encoder. The saliency of every image comes from one backward pass (images do not
interact in the reward, so the gradient of the summed reward is per-image); a reward without
gradients (``http``) has none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from srpo.cpu_sampling import sample_split
from srpo.flow import StepCallback
from srpo.models.base import Generator
from srpo.rewards.base import (
    Reward,
    TextCoverage,
    check_pixels,
    is_differentiable,
    srp_form,
)
from srpo.rewards.srp import augment, difference_reward

MAX_IMAGES = 64
MAX_WORDS = 16
MAX_SWEEP_WORDS = 64
MAX_PROMPT_CHARS = 1000
MAX_WORD_CHARS = 100
MIN_IMAGE_SIDE = 8
SWEEP_RELATIVE_THRESHOLD = 0.35


def validate_prompt(prompt: str) -> str:
    """The stripped prompt; ``ValueError`` if it is empty or too long."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt is empty: type what the images should show")
    prompt = prompt.strip()
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"prompt has {len(prompt)} characters; at most {MAX_PROMPT_CHARS}")
    return prompt


def validate_words(
    words: Sequence[str] | str, field: str, limit: int = MAX_WORDS
) -> tuple[str, ...]:
    """Words stripped of spaces and final dots, de-duplicated in order; ``ValueError`` if empty."""
    words = (words,) if isinstance(words, str) else tuple(words)
    cleaned = []
    for word in words:
        word = word.strip().rstrip(".").strip() if isinstance(word, str) else ""
        if not word:
            raise ValueError(f"{field} words contain an empty word")
        if len(word) > MAX_WORD_CHARS:
            raise ValueError(f"{field} word {word[:30]!r}... is longer than {MAX_WORD_CHARS}")
        cleaned.append(word)
    cleaned = tuple(dict.fromkeys(cleaned))
    if not cleaned:
        raise ValueError(f"{field} words are empty: give at least one word")
    if len(cleaned) > limit:
        raise ValueError(f"{len(cleaned)} {field} words; at most {limit}")
    return cleaned


def validate_pixels(pixels: torch.Tensor) -> None:
    """``ValueError`` unless ``pixels`` is a float ``[N, 3, H, W]`` batch in [0, 1] the lab takes."""
    if isinstance(pixels, torch.Tensor) and not pixels.is_floating_point():
        raise ValueError(f"pixels must be floats in [0, 1], got dtype {pixels.dtype}")
    if isinstance(pixels, torch.Tensor) and pixels.numel() == 0:
        raise ValueError("no images: sample or upload at least one")
    check_pixels(pixels)
    n, _, height, width = pixels.shape
    if n > MAX_IMAGES:
        raise ValueError(f"{n} images; the lab scores at most {MAX_IMAGES} at once")
    if min(height, width) < MIN_IMAGE_SIDE:
        raise ValueError(f"images are {height}x{width}; each side needs {MIN_IMAGE_SIDE}+ px")


@dataclass(frozen=True)
class LabPreview:
    """Scores of ``N`` images under a prompt and control words (all tensors on the CPU).

    ``pair_srp[i, j]`` is the SRP reward with ``positive[i]`` and ``negative[j]``; ``srp``
    is its mean over all pairs, which equals the SRP reward of the mean text embeddings.
    ``saliency`` is the per-pixel L2 norm over channels of ``d srp / d pixels`` (None for a
    reward without gradients). ``form`` is the SRP form used (``embedding`` or
    ``difference``).
    """

    prompt: str
    k: float
    positive: tuple[str, ...]
    negative: tuple[str, ...]
    plain: torch.Tensor
    positive_scores: torch.Tensor
    negative_scores: torch.Tensor
    pair_srp: torch.Tensor
    srp: torch.Tensor
    saliency: torch.Tensor | None
    form: str = "embedding"

    @property
    def rank_plain(self) -> list[int]:
        """Image indices, best first, by the plain reward ``r(p)`` (before)."""
        return ranking(self.plain)

    @property
    def rank_srp(self) -> list[int]:
        """Image indices, best first, by the SRP reward (after)."""
        return ranking(self.srp)

    def rows(self) -> list[dict[str, str | int | float]]:
        """One table row per image: every score and the 1-based rank before and after."""
        place_plain = {image: i + 1 for i, image in enumerate(self.rank_plain)}
        place_srp = {image: i + 1 for i, image in enumerate(self.rank_srp)}
        rows = []
        for n in range(self.plain.shape[0]):
            row: dict[str, str | int | float] = {"image": n, "r(p)": float(self.plain[n])}
            for i, word in enumerate(self.positive):
                row[f"r({word}. p)"] = float(self.positive_scores[i, n])
            for j, word in enumerate(self.negative):
                row[f"r({word}. p)"] = float(self.negative_scores[j, n])
            for i, pos in enumerate(self.positive):
                for j, neg in enumerate(self.negative):
                    row[f"srp({pos} / {neg})"] = float(self.pair_srp[i, j, n])
            row |= {"srp": float(self.srp[n]), "rank before": place_plain[n]}
            row["rank after"] = place_srp[n]
            rows.append(row)
        return rows


def ranking(scores: torch.Tensor) -> list[int]:
    """Indices of ``scores`` from highest to lowest (ties keep the input order)."""
    return torch.argsort(scores, descending=True, stable=True).tolist()


def score_texts(reward: Reward, pixels: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
    """Scores ``[T, N]`` of every image under every text, in the reward's SRP form: a dual
    encoder embeds each distinct text and the images once; any other reward scores each
    (text, image) pair, all in one call."""
    distinct = list(dict.fromkeys(texts))
    index = [distinct.index(t) for t in texts]
    n = pixels.shape[0]
    if srp_form(reward) == "embedding":
        image = reward.encode_image(pixels)
        text = reward.encode_text(distinct).to(image)
        return (reward.scale * (text @ image.T))[index]
    flat = reward.score(
        pixels.repeat(len(distinct), 1, 1, 1), [t for t in distinct for _ in range(n)]
    )
    return flat.view(len(distinct), n).to(torch.float32)[index]


def _prepare(reward: Reward, pixels: torch.Tensor) -> torch.Tensor:
    validate_pixels(pixels)
    device = getattr(reward, "device", pixels.device)
    return pixels.detach().to(device=device, dtype=torch.float32).clamp(0, 1)


def preview(
    reward: Reward,
    pixels: torch.Tensor,
    prompt: str,
    positive: Sequence[str] | str,
    negative: Sequence[str] | str,
    k: float = 0.0,
    saliency: bool = True,
) -> LabPreview:
    """Score images by ``r(p)``, ``r(pos. p)``, ``r(neg. p)`` and SRP for every (pos, neg) pair.

    ``pixels`` are ``[N, 3, H, W]`` in [0, 1] (sampled or uploaded); ``k`` is SRP's share of
    absolute reward, in [0, 10]. With ``saliency`` the SRP gradient map comes from one
    backward pass over the batch.
    """
    prompt = validate_prompt(prompt)
    positive = validate_words(positive, "positive")
    negative = validate_words(negative, "negative")
    both = sorted(set(positive) & set(negative))
    if both:
        raise ValueError(f"word(s) {both} are both positive and negative")
    if not isinstance(k, int | float) or not math.isfinite(k) or not 0 <= k <= 10:
        raise ValueError(f"k must be a number in [0, 10], got {k!r}")
    pixels = _prepare(reward, pixels)
    texts = [prompt, *(augment(w, [prompt])[0] for w in (*positive, *negative))]
    saliency = saliency and is_differentiable(reward)
    with torch.enable_grad():
        pixels.requires_grad_(saliency)
        scores = score_texts(reward, pixels, texts)
        pos, neg = scores[1 : 1 + len(positive)], scores[1 + len(positive) :]
        pairs = difference_reward(pos[:, None], neg[None, :], k)
        srp = pairs.mean(dim=(0, 1))
        grad = None
        if saliency:
            (grad,) = torch.autograd.grad(srp.sum(), pixels)
    return LabPreview(
        prompt=prompt,
        k=float(k),
        positive=positive,
        negative=negative,
        plain=scores[0].detach().cpu(),
        positive_scores=scores[1 : 1 + len(positive)].detach().cpu(),
        negative_scores=scores[1 + len(positive) :].detach().cpu(),
        pair_srp=pairs.detach().cpu(),
        srp=srp.detach().cpu(),
        saliency=None if grad is None else grad.norm(dim=1).cpu(),
        form=srp_form(reward),
    )


@dataclass(frozen=True)
class WordSensitivity:
    """How prefixing ``word`` shifts the reward: ``r(word. p) - r(p)`` over the images.

    ``mean_shift`` and ``spread`` (population std) summarise the per-image shifts;
    ``effect`` is their root mean square, ``sqrt(mean_shift**2 + spread**2)``.
    """

    word: str
    mean_shift: float
    spread: float
    effect: float
    flagged: bool
    unknown: tuple[str, ...] = ()  # pieces of the word the reward's tokenizer does not know
    truncated: bool = False  # "word. prompt" is longer than the reward's text tower reads


@dataclass(frozen=True)
class SweepResult:
    """A sensitivity sweep: one entry per candidate word, and the flagging threshold used."""

    prompt: str
    words: tuple[WordSensitivity, ...]
    threshold: float

    @property
    def flagged(self) -> list[str]:
        """Words that barely move the reward."""
        return [w.word for w in self.words if w.flagged]

    @property
    def unknown(self) -> list[str]:
        """Words the reward's tokenizer maps, in whole or in part, to its unknown token."""
        return [w.word for w in self.words if w.unknown]

    @property
    def truncated(self) -> list[str]:
        """Words whose prefixed prompt the reward cuts at its token limit."""
        return [w.word for w in self.words if w.truncated]


@torch.no_grad()
def sensitivity_sweep(
    reward: Reward,
    pixels: torch.Tensor,
    prompt: str,
    words: Sequence[str],
    relative: float = SWEEP_RELATIVE_THRESHOLD,
    absolute: float = 0.0,
) -> SweepResult:
    """Score candidate control words by how much prefixing them moves the reward.

    A word is flagged when its ``effect`` (RMS over images of ``r(word. p) - r(p)``, in the
    reward's own units) is below ``max(relative * strongest effect, absolute)``: it moves
    the reward less than ``relative`` (default 35%) of the strongest candidate, or less than
    an absolute floor (default 0, off). A one-word sweep is judged by ``absolute`` only.
    Words the reward does not know (unknown tokens) or that repeat the prompt score low.
    Where the reward can say how its tokenizer reads a text (``text_coverage``), each entry
    also names the word's unknown pieces and whether ``word. p`` is truncated: two unknown
    words read as the same token and score alike.
    """
    prompt = validate_prompt(prompt)
    words = validate_words(words, "candidate", MAX_SWEEP_WORDS)
    if not 0 <= relative <= 1 or not math.isfinite(absolute) or absolute < 0:
        raise ValueError("relative must lie in [0, 1] and absolute must be >= 0")
    pixels = _prepare(reward, pixels)
    texts = [augment(w, [prompt])[0] for w in words]
    scores = score_texts(reward, pixels, [prompt, *texts])
    shifts = (scores[1:] - scores[:1]).cpu().double()
    mean, spread = shifts.mean(dim=1), shifts.std(dim=1, correction=0)
    effect = (mean**2 + spread**2).sqrt()
    threshold = max(relative * float(effect.max()), absolute)
    coverage = getattr(reward, "text_coverage", None)
    read = [coverage(t) if coverage else None for t in texts]
    entries = tuple(
        WordSensitivity(
            word,
            float(m),
            float(s),
            float(e),
            bool(e < threshold),
            _unknown_pieces(word, seen) if seen else (),
            bool(seen and seen.truncated),
        )
        for word, m, s, e, seen in zip(words, mean, spread, effect, read, strict=True)
    )
    return SweepResult(prompt, entries, threshold)


def _unknown_pieces(word: str, seen: TextCoverage) -> tuple[str, ...]:
    """The unknown pieces of ``word. p`` that lie in the word (the prompt's are not its)."""
    lowered = word.lower()
    return tuple(piece for piece in seen.unknown if piece.lower() in lowered)


def _heat(values: np.ndarray) -> np.ndarray:
    """A black-red-yellow-white colour map of values in [0, 1] -> ``[..., 3]`` floats."""
    return np.clip(np.stack([3 * values, 3 * values - 1, 3 * values - 2], axis=-1), 0, 1)


def smooth_map(magnitude: torch.Tensor, sigma: float) -> torch.Tensor:
    """A ``[H, W]`` map blurred by a Gaussian of ``sigma`` pixels (reflected at the edges):
    per-pixel gradients are speckled, and what a user reads is the region."""
    if sigma <= 0:
        return magnitude
    radius = max(1, math.ceil(3 * sigma))
    radius = min(radius, magnitude.shape[0] - 1, magnitude.shape[1] - 1)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    padded = F.pad(magnitude[None, None].float(), (radius,) * 4, mode="reflect")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    return F.conv2d(rows, kernel.view(1, 1, -1, 1))[0, 0]


def saliency_overlay(
    image: torch.Tensor,
    saliency: torch.Tensor,
    alpha: float = 0.7,
    upscale: int = 1,
    sigma: float | None = None,
) -> np.ndarray:
    """A ``[H*upscale, W*upscale, 3]`` uint8 picture: the heat map blended over the image.

    The map is smoothed (:func:`smooth_map`, ``sigma`` pixels; default one 64th of the
    image's side, none for ``sigma=0``) and scaled by its 99th percentile per image (so one
    hot pixel does not wash out the rest; :func:`colour_scale` is its legend); each pixel
    blends in the heat colour with weight ``alpha * magnitude``. Upscaling interpolates
    image and map bilinearly, so the overlay is smooth at display size, not blocky.
    """
    if image.ndim != 3 or image.shape[0] != 3 or saliency.shape != image.shape[1:]:
        raise ValueError(
            f"need an image [3, H, W] and a map [H, W]; got {list(image.shape)}, "
            f"{list(saliency.shape)}"
        )
    sigma = max(image.shape[1:]) / 64 if sigma is None else sigma
    magnitude = smooth_map(saliency.detach().float().cpu(), sigma)
    top = float(torch.quantile(magnitude.flatten(), 0.99))
    magnitude = (magnitude / top).clamp(0, 1) if top > 0 else torch.zeros_like(magnitude)
    base = image.detach().float().clamp(0, 1).cpu()
    if upscale > 1:
        size = (image.shape[1] * upscale, image.shape[2] * upscale)
        both = torch.cat([base, magnitude[None]])[None]
        both = F.interpolate(both, size=size, mode="bilinear", align_corners=False)[0]
        base, magnitude = both[:3].clamp(0, 1), both[3].clamp(0, 1)
    heat = magnitude.numpy()
    weight = alpha * heat[..., None]
    blended = (1 - weight) * base.permute(1, 2, 0).numpy() + weight * _heat(heat)
    return np.round(blended * 255).astype(np.uint8)


def colour_scale(width: int = 256, height: int = 44) -> Image.Image:
    """The overlays' legend: the heat colours from no gradient (left) to the image's 99th
    percentile of smoothed ``|d SRP / d pixel|`` and above (right), labelled."""
    from PIL import ImageDraw

    bar = np.round(_heat(np.linspace(0, 1, width))[None].repeat(height // 2, 0) * 255)
    picture = Image.new("RGB", (width, height), "white")
    picture.paste(Image.fromarray(bar.astype(np.uint8)), (0, 0))
    draw = ImageDraw.Draw(picture)
    draw.text((2, height // 2 + 4), "none", fill="black")
    draw.text((width - 2, height // 2 + 4), "99th percentile", fill="black", anchor="ra")
    return picture


def overlays(result: LabPreview, pixels: torch.Tensor, upscale: int = 1) -> list[Image.Image]:
    """The saliency overlay of every image of a preview, as PIL images."""
    if result.saliency is None:
        raise ValueError("this preview was computed without saliency")
    return [
        Image.fromarray(saliency_overlay(image, heat, upscale=upscale))
        for image, heat in zip(pixels.cpu(), result.saliency, strict=True)
    ]


def sample_lab_images(
    generator: Generator,
    prompt: str,
    seeds: Sequence[int],
    steps: int,
    shift: float,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """Pixels ``[N, 3, H, W]`` of the prompt at fixed seeds (validated before any compute), on
    a CPU split over single-threaded workers from any thread (:mod:`srpo.cpu_sampling`);
    ``on_step(done, total)`` hears of each denoising step."""
    prompt = validate_prompt(prompt)
    if not seeds:
        raise ValueError("no seeds: give at least one")
    if len(seeds) > MAX_IMAGES:
        raise ValueError(f"{len(seeds)} seeds; the lab scores at most {MAX_IMAGES} images")
    prompts = [prompt] * len(seeds)
    return sample_split(generator, prompts, seeds, steps, shift, on_step)


def reward_input_size(reward: Reward) -> int:
    """The square side the reward's image tower sees (its preprocessing size)."""
    size = getattr(getattr(reward, "preprocess", None), "size", None)
    if not isinstance(size, int):
        raise ValueError(f"reward {reward.name!r} does not expose its input size")
    return size
