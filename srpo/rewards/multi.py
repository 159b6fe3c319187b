"""A weighted sum of rewards, each normalised by its running statistics.

``r(x, p) = sum_i w_i (r_i(x, p) - mean_i) / std_i``, where ``mean_i`` and ``std_i`` are the
running mean and standard deviation of reward ``i`` over every score it has given (updated
before normalising, so the first batch is standardised by its own statistics). Normalising
puts rewards of different scales (HPS cosines near 0.3, aesthetic scores near 5, ImageReward
z-scores) on one footing, so the weights mean what they say. Flow-GRPO's ``multi_score`` sums
``weight * score`` of the raw scores; ``normalize=False`` gives that. The statistics are
float64 buffers: they move with ``.to`` (never cast), are saved in the state dict, and each
rank keeps its own.

Config-addressable by a spec string, ``"0.7*hpsv2.1+0.3*pickscore"`` (a component without a
weight has weight 1; ``name@path`` gives its weights' path), or by a mapping
(:func:`load_weighted_reward`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from srpo.rewards.base import Reward, ScoringReward, is_differentiable


@dataclass(frozen=True)
class Component:
    """One term of a weighted reward spec."""

    name: str
    weight: float
    path: str | None = None


def is_spec(text: str) -> bool:
    """Whether ``text`` is a weighted reward spec rather than one reward's name."""
    return "+" in text or "*" in text


def parse_spec(spec: str) -> list[Component]:
    """``"0.7*hpsv2.1+0.3*pickscore@/weights/pick"`` -> its components."""
    components = []
    for term in spec.split("+"):
        term = term.strip()
        weight_text, star, rest = term.partition("*")
        if not star:
            weight_text, rest = "1", term
        name, at, path = rest.strip().partition("@")
        name = name.strip()
        try:
            weight = float(weight_text)
        except ValueError as error:
            raise ValueError(
                f"reward spec {spec!r}: weight {weight_text.strip()!r} is not a number"
            ) from error
        if not name:
            raise ValueError(f"reward spec {spec!r}: term {term!r} has no reward name")
        if at and not path.strip():
            raise ValueError(f"reward spec {spec!r}: term {term!r} has an empty path")
        components.append(Component(name, weight, path.strip() if at else None))
    return components


class WeightedReward(ScoringReward):
    """Several rewards with weights, each normalised by its running statistics."""

    def __init__(
        self,
        rewards: Sequence[Reward],
        weights: Sequence[float],
        normalize: bool = True,
        eps: float = 1e-6,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if not rewards or len(rewards) != len(weights):
            raise ValueError("a weighted reward needs one weight per reward, and at least one")
        weights = [float(w) for w in weights]
        if not all(torch.isfinite(torch.tensor(w)) for w in weights) or not any(weights):
            raise ValueError(f"weights must be finite and not all zero, got {weights}")
        self.rewards = nn.ModuleList(rewards)
        self.weights = weights
        self.normalize = normalize
        self.eps = float(eps)
        self.track = True  # update the statistics on every score (False: freeze them)
        self.differentiable = all(is_differentiable(r) for r in rewards)
        self.name = name or "+".join(
            f"{w:g}*{r.name}" for r, w in zip(rewards, weights, strict=True)
        )
        n = len(rewards)
        self.register_buffer("count", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(n, dtype=torch.float64))
        self.last: dict[str, torch.Tensor] = {}
        self.freeze()

    def _apply(self, fn, recurse=True):
        # ``.to(dtype)`` must not round the statistics: they stay float64 and only move.
        stats = {k: self._buffers.pop(k) for k in ("count", "mean", "m2")}
        try:
            super()._apply(fn, recurse)
        finally:
            for key, value in stats.items():
                self._buffers[key] = value.to(self._anchor.device)
        return self

    @property
    def std(self) -> torch.Tensor:
        """Running standard deviations (1 until a reward has given two scores)."""
        var = self.m2 / (self.count - 1).clamp(min=1)
        return torch.where(self.count > 1, var.sqrt(), torch.ones_like(var))

    def _update(self, i: int, values: torch.Tensor) -> None:
        """Chan et al.'s parallel update of count, mean and M2 with a batch."""
        values = values.detach().to(self.mean)
        n_b = values.numel()
        if n_b == 0:
            return
        mean_b = values.mean()
        m2_b = ((values - mean_b) ** 2).sum()
        n_a, total = self.count[i], self.count[i] + n_b
        delta = mean_b - self.mean[i]
        self.mean[i] += delta * n_b / total
        self.m2[i] += m2_b + delta**2 * n_a * n_b / total
        self.count[i] = total

    def score(self, pixels: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        texts = self._check_texts(pixels, texts)
        total = torch.zeros(pixels.shape[0], device=pixels.device)
        self.last = {}
        for i, (reward, weight) in enumerate(zip(self.rewards, self.weights, strict=True)):
            values = reward.score(pixels, texts).float().to(pixels.device)
            self.last[reward.name] = values.detach()
            if self.normalize:
                if self.track:
                    self._update(i, values)
                mean, std = self.mean[i].float(), self.std[i].float()
                values = (values - mean.to(values.device)) / (std.to(values.device) + self.eps)
            total = total + weight * values
        return total


def load_weighted_reward(
    components: Mapping[str, float | Mapping] | Sequence[Component] | str,
    normalize: bool = True,
    loader: Callable[[str, str | Path | None], Reward] | None = None,
) -> WeightedReward:
    """A :class:`WeightedReward` from a spec string, components, or a mapping
    ``{name: weight}`` / ``{name: {"weight": w, "path": p}}``."""
    if loader is None:
        from srpo.rewards import load_reward as loader
    if isinstance(components, str):
        components = parse_spec(components)
    elif isinstance(components, Mapping):
        items = []
        for name, value in components.items():
            if isinstance(value, Mapping):
                unknown = set(value) - {"weight", "path"}
                if unknown:
                    raise ValueError(f"reward {name!r}: unknown settings {sorted(unknown)}")
                items.append(Component(name, float(value.get("weight", 1.0)), value.get("path")))
            else:
                items.append(Component(name, float(value)))
        components = items
    components = list(components)
    for c in components:
        if is_spec(c.name):
            raise ValueError(f"weighted rewards do not nest: {c.name!r}")
    rewards = [loader(c.name, c.path) for c in components]
    return WeightedReward(rewards, [c.weight for c in components], normalize=normalize)
