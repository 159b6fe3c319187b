"""Reward-only rewards: scores without a gradient (a remote scorer, an OCR check).

GRPO and the hacking monitors only read a reward's value, so they take these; the gradient
methods refuse them (:func:`srpo.rewards.base.check_reward_for_method`).

:class:`HTTPReward` is a client for a JSON scoring service. One request per chunk of at most
``batch_size`` images::

    POST <url>   {"prompts": ["a cat", ...], "images": ["<base64 PNG>", ...]}
    200          {"scores": [0.71, ...]}

The reply must hold one finite number per image; a timeout, an HTTP error, a reply larger
than ``max_reply_bytes`` or one of the wrong shape is a ``RuntimeError`` naming the URL.
"""

from __future__ import annotations

import abc
import base64
import io
import json
import math
import urllib.error
import urllib.request
from collections.abc import Sequence

import torch

from srpo.rewards.base import ScoringReward, check_pixels, check_scores


class RewardOnly(ScoringReward):
    """A reward whose score carries no gradient. Subclasses implement :meth:`_scores`."""

    differentiable = False

    @abc.abstractmethod
    def _scores(self, pixels: torch.Tensor, texts: list[str]) -> Sequence[float]:
        """One float per image of ``pixels`` (detached, on the CPU, in [0, 1])."""

    def score(self, pixels: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        check_pixels(pixels)
        texts = self._check_texts(pixels, texts)
        with torch.no_grad():
            values = self._scores(pixels.detach().float().clamp(0, 1).cpu(), texts)
        scores = torch.tensor([float(v) for v in values], dtype=torch.float32)
        return check_scores(scores, pixels.shape[0], self.name).to(pixels.device)


def png_base64(image: torch.Tensor) -> str:
    """One ``[3, H, W]`` image in [0, 1] as a base64 PNG."""
    from PIL import Image

    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class HTTPReward(RewardOnly):
    """Scores images with a remote JSON service (see the module docstring for the format)."""

    def __init__(
        self,
        url: str,
        timeout: float = 60.0,
        batch_size: int = 16,
        max_reply_bytes: int = 1 << 20,
        name: str = "http",
    ) -> None:
        super().__init__()
        if not url.lower().startswith(("http://", "https://")):
            raise ValueError(f"HTTP reward needs an http:// or https:// URL, got {url!r}")
        if timeout <= 0 or batch_size < 1 or max_reply_bytes < 1:
            raise ValueError("timeout, batch_size and max_reply_bytes must be positive")
        self.url = url
        self.timeout = float(timeout)
        self.batch_size = int(batch_size)
        self.max_reply_bytes = int(max_reply_bytes)
        self.name = name
        self.freeze()

    def _post(self, payload: dict) -> object:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                body = reply.read(self.max_reply_bytes + 1)
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"{self.name}: {self.url} answered HTTP {error.code}") from error
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise RuntimeError(f"{self.name}: cannot reach {self.url} ({reason})") from error
        if len(body) > self.max_reply_bytes:
            raise RuntimeError(
                f"{self.name}: reply from {self.url} exceeds {self.max_reply_bytes} B"
            )
        try:
            return json.loads(body)
        except ValueError as error:
            raise RuntimeError(f"{self.name}: reply from {self.url} is not JSON") from error

    def _scores(self, pixels: torch.Tensor, texts: list[str]) -> list[float]:
        scores: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            prompts = texts[chunk]
            reply = self._post(
                {"prompts": prompts, "images": [png_base64(image) for image in pixels[chunk]]}
            )
            values = reply.get("scores") if isinstance(reply, dict) else None
            if not isinstance(values, list) or len(values) != len(prompts):
                raise RuntimeError(
                    f"{self.name}: reply from {self.url} needs 'scores', a list of "
                    f"{len(prompts)} numbers"
                )
            if not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in values
            ):
                raise RuntimeError(f"{self.name}: reply from {self.url} has non-finite scores")
            scores.extend(float(v) for v in values)
        return scores
