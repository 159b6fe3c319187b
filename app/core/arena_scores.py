"""Rewards of the images of arena pairs: the plain reward or a Reward Lab preset's SRP."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.model_refs import ModelCache
from app.core.models import Comparison, RewardPreset, SampleImage
from app.core.settings import Settings
from app.core.storage import resolve


class PairScores:
    """Rewards of both images of arena pairs, computed once per image and scorer.

    The reward is the studio's default reward from the :class:`ModelCache`, scored under its
    lock: the plain reward ``r(prompt)``, or a Reward Lab preset's SRP reward (its control
    words and ``k``) through :func:`srpo.lab.preview`, overall and per (positive, negative)
    word pair. Scores are kept by image id for the life of the process.
    """

    def __init__(self, settings: Settings, models: ModelCache) -> None:
        self.settings, self.models = settings, models
        self.cache: dict[tuple, dict[int, dict[str, float]]] = {}

    def _pixels(self, images: list[SampleImage]):
        import numpy as np
        import torch
        from PIL import Image

        arrays = []
        for image in images:
            with Image.open(resolve(self.settings.storage, image.path)) as picture:
                arrays.append(np.asarray(picture.convert("RGB"), dtype=np.float32) / 255)
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)

    def _score(
        self, images: list[SampleImage], preset: RewardPreset | None
    ) -> dict[int, dict[str, float]]:
        import torch

        from srpo.lab import MAX_IMAGES, preview

        reward = self.models.reward()
        out: dict[int, dict[str, float]] = {}
        groups: dict[tuple, list[SampleImage]] = {}
        for image in images:  # one batch per prompt and image size
            groups.setdefault((image.prompt, image.width, image.height), []).append(image)
        with self.models.lock, torch.no_grad():
            for (prompt, _, _), group in groups.items():
                for start in range(0, len(group), MAX_IMAGES):
                    chunk = group[start : start + MAX_IMAGES]
                    pixels = self._pixels(chunk)
                    if preset is None:
                        values = reward.score(pixels, [prompt] * len(chunk))
                        out |= {im.id: {"r(p)": float(values[n])} for n, im in enumerate(chunk)}
                        continue
                    found = preview(
                        reward,
                        pixels,
                        prompt,
                        preset.positive_words,
                        preset.negative_words,
                        preset.k,
                        saliency=False,
                    )
                    for n, image in enumerate(chunk):
                        row = {"srp": float(found.srp[n])}
                        for i, pos in enumerate(found.positive):
                            for j, neg in enumerate(found.negative):
                                row[f"{pos} / {neg}"] = float(found.pair_srp[i, j, n])
                        out[image.id] = row
        return out

    def of_pairs(
        self, session: Session, pair_ids: set[int], preset: RewardPreset | None = None
    ) -> dict[str, dict[str, dict[str, float]]]:
        """``{score name: {pair id: {model: score}}}`` for the given pairs: ``r(p)`` for the
        plain reward, else the preset's ``srp`` and one entry per control-word pair."""
        key = (
            None
            if preset is None
            else (tuple(preset.positive_words), tuple(preset.negative_words), float(preset.k))
        )
        cache = self.cache.setdefault(key, {})
        pairs = session.scalars(select(Comparison).where(Comparison.id.in_(pair_ids))).all()
        wanted = {i for p in pairs for i in (p.left_image_id, p.right_image_id)}
        missing = sorted(wanted - set(cache))
        if missing:
            images = session.scalars(select(SampleImage).where(SampleImage.id.in_(missing))).all()
            cache |= self._score(list(images), preset)
        names = list(cache[next(iter(wanted))]) if wanted else []
        return {
            name: {
                str(p.id): {
                    p.left_model: cache[p.left_image_id][name],
                    p.right_model: cache[p.right_image_id][name],
                }
                for p in pairs
            }
            for name in names
        }
