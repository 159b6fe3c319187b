"""Sampling images at fixed seeds, and labelled grids of them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image, ImageDraw

from srpo.flow import StepCallback
from srpo.models.base import Generator


def parse_seeds(text: str) -> list[int]:
    """``"0-7"``, ``"1,5,9"`` or a mix like ``"0-3,10"`` -> a list of seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            first, last = int(low), int(high) if sep else int(low)
        except ValueError:
            raise ValueError(f"seeds must look like 0-7 or 1,5,9; got {text!r}") from None
        if last < first or first < 0:
            raise ValueError(f"bad seed range {part!r} in {text!r}")
        seeds.extend(range(first, last + 1))
    if not seeds:
        raise ValueError(f"no seeds in {text!r}")
    return seeds


def seeded_noise(generator: Generator, seeds: Sequence[int]) -> torch.Tensor:
    """Noise whose row ``i`` depends only on ``seeds[i]`` (same image whatever the batch)."""
    return torch.cat([generator.noise(1, torch.Generator().manual_seed(int(s))) for s in seeds])


@torch.no_grad()
def sample_images(
    generator: Generator,
    prompts: Sequence[str],
    seeds: Sequence[int],
    steps: int,
    shift: float,
    batch: int = 32,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """Pixels ``[N, 3, H, W]`` of ``prompts[i]`` sampled from ``seeds[i]``;
    ``on_step(done, total)`` counts denoising steps over every batch."""
    if len(prompts) != len(seeds):
        raise ValueError(f"one seed per prompt: {len(prompts)} prompts, {len(seeds)} seeds")
    noise = seeded_noise(generator, seeds)
    starts = range(0, len(prompts), batch)
    images = []
    for index, start in enumerate(starts):
        told = {}  # only when asked: generators written before on_step still sample
        if on_step is not None:
            told["on_step"] = lambda done, total, i=index: on_step(
                i * total + done, len(starts) * total
            )
        cond = generator.encode_prompts(list(prompts[start : start + batch]))
        latents = generator.sample(cond, noise[start : start + batch], steps, shift, **told)
        images.append(generator.decode(latents).cpu())
    return torch.cat(images)


def labelled_grid(
    images: torch.Tensor, labels: Sequence[str], title: str = "", columns: int = 8, scale: int = 2
) -> Image.Image:
    """A PNG-ready grid: each image upscaled by ``scale`` with its label under it."""
    n, _, h, w = images.shape
    cell_w, cell_h, label_h = w * scale, h * scale, 14
    title_h = 18 if title else 0
    columns = max(1, min(columns, n))
    rows = (n + columns - 1) // columns
    canvas = Image.new("RGB", (columns * cell_w, title_h + rows * (cell_h + label_h)), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 3), title[:120], fill="black")
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        tile = Image.fromarray(array).resize((cell_w, cell_h), Image.NEAREST)
        x, y = (i % columns) * cell_w, title_h + (i // columns) * (cell_h + label_h)
        canvas.paste(tile, (x, y))
        draw.text((x + 3, y + cell_h + 1), str(label)[:24], fill="black")
    return canvas
