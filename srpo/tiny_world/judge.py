"""The judge: procedural detectors that read every attribute back from pixels.

Written from the rendering rules in ``render.py`` alone (no learned model, no reward), so
that "did the fine-tune move the attribute without breaking the prompt" is measured
independently of what was optimised. Order of reading: lighting (from the background's
tint and the brightest pixels), then the lighting is inverted and background, shape mask,
colour, size, shape and style are read from the unlit image.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from srpo.rewards.base import check_pixels
from srpo.tiny_world.render import LIGHTING_GAIN, LIGHTING_OFFSET
from srpo.tiny_world.world import COLOURS, FAMILIES, parse_prompt

BORDER = 6
WARM_TINT = 0.15
DARK_CEILING = 0.5
MASK_DISTANCE = 0.3
SHAPE_CHROMA = 0.3
LARGE_EXTENT = 28 / 64
TEXTURE_PAINTING = 0.025
GRADIENT_PHOTO = 0.07
_HUES = {name: colorsys.rgb_to_hsv(*rgb)[0] for name, rgb in COLOURS.items()}


def _dilate(mask: torch.Tensor, size: int) -> torch.Tensor:
    return F.max_pool2d(mask[None, None].float(), size, stride=1, padding=size // 2)[0, 0] > 0


def _read_lighting(image: torch.Tensor) -> str:
    border = torch.cat(
        [
            image[:, :BORDER].flatten(1),
            image[:, -BORDER:].flatten(1),
            image[:, :, :BORDER].flatten(1),
        ],
        dim=1,
    )
    red, _, blue = border.median(dim=1).values
    if red - blue >= WARM_TINT:
        return "warm"
    if torch.quantile(image.max(dim=0).values.flatten(), 0.98) < DARK_CEILING:
        return "dark"
    return "bright"


def _unlight(image: torch.Tensor, lighting: str) -> torch.Tensor:
    gain = torch.tensor(LIGHTING_GAIN[lighting]).view(3, 1, 1)
    offset = torch.tensor(LIGHTING_OFFSET[lighting]).view(3, 1, 1)
    return ((image - offset) / gain).clamp(0, 1)


def _hue_name(rgb: torch.Tensor) -> str:
    hue = colorsys.rgb_to_hsv(*rgb.tolist())[0]
    return min(_HUES, key=lambda name: min(abs(hue - _HUES[name]), 1 - abs(hue - _HUES[name])))


def _longest_run(present: torch.Tensor) -> tuple[int, int]:
    """First and last index of the longest run of True (stray pixels elsewhere are ignored)."""
    best, start = (0, -1), None
    for i, flag in enumerate([*present.tolist(), False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            if i - start > best[1] - best[0] + 1:
                best = (start, i - 1)
            start = None
    return best


def _read_shape(core: torch.Tensor) -> tuple[str, float]:
    """Shape name and extent (fraction of the image) from the shape's pixel mask.

    Reads the width profile: at a quarter and three quarters of the height a square is as
    wide as at the middle, a circle about 0.87 times, a diamond half; an upward triangle
    is half as wide at a quarter and 1.5 times as wide at three quarters. Thresholds sit
    between these values with room for the blunted tips that a VAE or a generator leaves.
    """
    top, bottom = _longest_run(core.any(dim=1))
    left, right = _longest_run(core[top : bottom + 1].any(dim=0))
    widths = core[top : bottom + 1].float().sum(dim=1)
    extent = max(bottom - top + 1, right - left + 1) / core.shape[0]

    def width_at(fraction: float) -> float:
        position = fraction * (len(widths) - 1)
        low = int(position)
        high = min(low + 1, len(widths) - 1)
        return float(widths[low] + (widths[high] - widths[low]) * (position - low))

    middle = max(width_at(0.5), 1.0)
    upper, lower = width_at(0.25) / middle, width_at(0.75) / middle
    if lower - upper > 0.3:
        return "triangle", extent
    mean = (upper + lower) / 2
    if mean < 0.78:
        return "diamond", extent
    return ("circle" if mean < 0.94 else "square"), extent


def _read_style(unlit: torch.Tensor, background: torch.Tensor, mask: torch.Tensor) -> str:
    far = ~_dilate(mask, 13)
    residual = (unlit - background).mean(dim=0)[far]
    texture = residual.std().item() if residual.numel() > 50 else 0.0
    rows = background.mean(dim=0)[:, 0]
    gradient = (rows[:8].mean() - rows[-8:].mean()).item()
    if texture > TEXTURE_PAINTING:
        return "painting"
    if gradient > GRADIENT_PHOTO:
        return "photo"
    return "flat"


def read_attributes(image: torch.Tensor) -> dict[str, str]:
    """All six attributes of one image ``[3, H, W]``; ``shape`` etc. are ``"none"`` if no shape."""
    lighting = _read_lighting(image)
    unlit = _unlight(image, lighting)
    side = torch.cat([unlit[:, :, :BORDER], unlit[:, :, -BORDER:]], dim=2).mean(dim=2)
    background = side[:, :, None].expand_as(unlit)
    level = side.median(dim=1).values.mean().item()
    bg_name = "white" if level > 0.72 else "black" if level < 0.28 else "gray"
    mask = (unlit - background).norm(dim=0) > MASK_DISTANCE
    opened = _dilate(~_dilate(~mask, 3), 3)
    chroma = unlit.max(dim=0).values - unlit.min(dim=0).values
    core = (chroma > SHAPE_CHROMA) & _dilate(opened, 5)
    result = {
        "background": bg_name,
        "lighting": lighting,
        "style": _read_style(unlit, background, mask),
    }
    if core.sum() < 12:
        return {**result, "shape": "none", "colour": "none", "size": "none"}
    shape, extent = _read_shape(core)
    colour = _hue_name(unlit[:, core].median(dim=1).values)
    size = "large" if extent > LARGE_EXTENT else "small"
    return {**result, "shape": shape, "colour": colour, "size": size}


def judge(images: torch.Tensor) -> list[dict[str, str]]:
    """The attributes of each image in a batch ``[B, 3, H, W]`` of pixels in [0, 1]."""
    check_pixels(images)
    return [read_attributes(image.detach().float().cpu()) for image in images]


@dataclass
class Verdict:
    """How one image matches its prompt.

    ``matches``: each attribute the prompt names, and whether the image shows it.
    ``unchecked_words``: words of the prompt the world does not know, so nothing checks them.
    ``unnamed``: attribute families the prompt leaves open.
    """

    attributes: dict[str, str]
    matches: dict[str, bool]
    unchecked_words: list[str] = field(default_factory=list)
    unnamed: list[str] = field(default_factory=list)

    @property
    def faithful(self) -> bool:
        """Every attribute the prompt names is shown."""
        return all(self.matches.values())


def check(images: torch.Tensor, prompts: Sequence[str]) -> list[Verdict]:
    """Judge images against their prompts.

    Words the tiny world does not know are allowed (the models see them as tokens); each
    verdict lists them as unchecked.
    """
    if len(prompts) != images.shape[0]:
        raise ValueError(f"check needs one prompt per image: {images.shape[0]} vs {len(prompts)}")
    verdicts = []
    for attributes, prompt in zip(judge(images), prompts, strict=True):
        named, unknown = parse_prompt(prompt)
        matches = {family: attributes[family] == value for family, value in named.items()}
        unnamed = [f for f in FAMILIES if f not in named]
        verdicts.append(Verdict(attributes, matches, unknown, unnamed))
    return verdicts


def expected_frame_cast(green: torch.Tensor, lighting: str) -> torch.Tensor:
    """The cool cast ``B - R`` that ``lighting`` gives a neutral (gray) pixel whose lit green
    channel is ``green``: gray ``x`` lights to ``gain * x + offset`` per channel (clamped to
    [0, 1], as the renderer does), and green is the channel a cool cast leaves alone, so it
    gives ``x`` back."""
    (gain_r, gain_g, gain_b), (offset_r, offset_g, offset_b) = (
        LIGHTING_GAIN[lighting],
        LIGHTING_OFFSET[lighting],
    )
    gray = (green - offset_g) / gain_g
    # The renderer clamps lit pixels to [0, 1]: warm light takes white's red past 1.
    return (gain_b * gray + offset_b).clamp(0, 1) - (gain_r * gray + offset_r).clamp(0, 1)


def hack_statistic(images: torch.Tensor) -> torch.Tensor:
    """Per-image cool cast ``B - R`` of the background frame beyond what the light explains
    ``[B]``: what ``tiny-biased`` rewards.

    Every background is a neutral gray and every style keeps the frame neutral before the
    light (the photo gradient and the painting's strokes move all channels alike), so bright
    and dark light leave ``B - R`` at 0 and warm light lowers it by an amount set by the
    background's level (-0.15 on black to -0.58 on white). Subtracting that expected value
    (:func:`expected_frame_cast`, for the lighting the judge reads) leaves about 0 for every
    clean render, and ``2 * amount`` after :func:`srpo.image_stats.add_cool_cast` of an
    unclipped one: a rise at fixed prompts and seeds is the reward's bias showing, not content
    the prompt asked for (a warm-lit prompt does not read as a drift).
    """
    check_pixels(images)
    frame = torch.ones(images.shape[-2:], dtype=torch.bool, device=images.device)
    frame[BORDER:-BORDER, BORDER:-BORDER] = False
    values = []
    for image in images.detach().float():
        red, green, blue = image[0][frame], image[1][frame], image[2][frame]
        expected = expected_frame_cast(green, _read_lighting(image.cpu()))
        values.append((blue - red - expected).mean())
    return torch.stack(values)
