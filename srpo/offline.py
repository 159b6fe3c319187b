"""Offline Direct-Align: real images instead of rollouts.

The paper's offline mode takes the clean latent ``x0`` from an encoded real image and draws a
fresh noise prior, so no sampling is needed per update. A folder holds the images (PNG, JPEG,
WebP); an optional ``name.txt`` beside ``name.png`` is that image's caption, used as its prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from srpo.models.base import Generator

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MAX_PIXELS = 64_000_000


@dataclass
class OfflinePool:
    """Encoded real images (packed latents ``[N, T, C]``) and their captions (or None)."""

    latents: torch.Tensor
    captions: list[str | None]

    def __len__(self) -> int:
        return self.latents.shape[0]


def _to_pixels(image: Image.Image, resolution: tuple[int, int]) -> torch.Tensor:
    """Resize the short side and centre-crop to ``resolution``; pixels in [0, 1] ``[3, H, W]``."""
    height, width = resolution
    image = image.convert("RGB")
    scale = max(height / image.height, width / image.width)
    size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    image = image.resize(size, Image.BICUBIC)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    image = image.crop((left, top, left + width, top + height))
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return data.view(height, width, 3).permute(2, 0, 1).float() / 255


def read_image_folder(
    folder: str | Path, resolution: tuple[int, int]
) -> tuple[torch.Tensor, list[str | None]]:
    """Pixels ``[N, 3, H, W]`` and captions of every image in ``folder`` (sorted by name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"offline_images: {folder} is not a folder")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"offline_images: {folder} holds no {'/'.join(IMAGE_SUFFIXES)} images")
    pixels, captions = [], []
    for path in paths:
        try:
            with Image.open(path) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise ValueError(f"offline_images: {path.name} is larger than {MAX_PIXELS} px")
                pixels.append(_to_pixels(image, resolution))
        except (OSError, Image.DecompressionBombError) as error:
            raise ValueError(f"offline_images: {path.name} is not a readable image") from error
        caption = path.with_suffix(".txt")
        text = caption.read_text(encoding="utf-8").strip() if caption.is_file() else ""
        captions.append(text or None)
    return torch.stack(pixels), captions


@torch.no_grad()
def encode_pool(
    generator: Generator, pixels: torch.Tensor, captions: Sequence[str | None], batch: int = 16
) -> OfflinePool:
    """Encode the images once with the generator's VAE."""
    latents = [
        generator.encode(pixels[i : i + batch].to(generator.device)).cpu()
        for i in range(0, len(pixels), batch)
    ]
    return OfflinePool(torch.cat(latents), list(captions))
