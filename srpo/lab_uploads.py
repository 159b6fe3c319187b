"""Reward Lab uploads: images people bring, decoded safely into pixels the reward scores."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from srpo.lab import MAX_IMAGES, MIN_IMAGE_SIDE

MAX_UPLOAD_BYTES = 20 * 2**20
MAX_UPLOAD_PIXELS = 40_000_000


def _read_upload(source: bytes | str | Path | BinaryIO, max_bytes: int) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    elif isinstance(source, str | Path):
        if os.path.getsize(source) > max_bytes:
            raise ValueError(f"upload is larger than {max_bytes // 2**20} MiB")
        data = Path(source).read_bytes()
    else:
        data = source.read(max_bytes + 1)
    if not data:
        raise ValueError("upload is empty")
    if len(data) > max_bytes:
        raise ValueError(f"upload is larger than {max_bytes // 2**20} MiB")
    return data


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited over white."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def load_upload(
    source: bytes | str | Path | BinaryIO,
    size: int,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_UPLOAD_PIXELS,
) -> torch.Tensor:
    """Decode an uploaded image safely into pixels ``[3, size, size]`` in [0, 1].

    Refuses (``ValueError``) files over ``max_bytes``, non-images, corrupt or truncated
    files, and images over ``max_pixels`` before decoding them (decompression bombs); the
    first frame is used, EXIF rotation applied, transparency composited over white, then
    the short side is resized to ``size`` and the centre cropped.
    """
    if size < MIN_IMAGE_SIDE:
        raise ValueError(f"size must be at least {MIN_IMAGE_SIDE}")
    data = _read_upload(source, max_bytes)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise Image.DecompressionBombError(f"{width}x{height}")
                if min(width, height) < MIN_IMAGE_SIDE:
                    raise ValueError(
                        f"image is {width}x{height}; each side needs {MIN_IMAGE_SIDE}+ px"
                    )
                image.draft("RGB", (size, size))
                rgb = _to_rgb(ImageOps.exif_transpose(image))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ValueError(
                f"image has too many pixels (limit {max_pixels:,}): refused as a possible "
                "decompression bomb"
            ) from None
        except UnidentifiedImageError:
            raise ValueError("upload is not an image (use PNG, JPEG or WebP)") from None
        except (OSError, SyntaxError, EOFError) as error:
            raise ValueError(f"image file is corrupt or truncated ({error})") from None
    fitted = ImageOps.fit(rgb, (size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(fitted, dtype=np.float32) / 255).permute(2, 0, 1)


def load_uploads(
    sources: Sequence[bytes | str | Path | BinaryIO], size: int, **limits: int
) -> torch.Tensor:
    """Pixels ``[N, 3, size, size]`` of several uploads (count checked before decoding)."""
    if not sources:
        raise ValueError("no uploads: add at least one image")
    if len(sources) > MAX_IMAGES:
        raise ValueError(f"{len(sources)} uploads; the lab scores at most {MAX_IMAGES}")
    return torch.stack([load_upload(source, size, **limits) for source in sources])
