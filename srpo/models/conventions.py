"""What each diffusers pipeline feeds its transformer, read off its ``__call__``.

Every backend integrates the same rectified flow ``x_s = (1 - s) x0 + s eps`` with the same
Euler steps (:mod:`srpo.flow`); the pipelines differ only in how they hand sigma to the
transformer, in the sign of what it returns, and in how they mix classifier-free guidance:

================  ======================  ===========  =========================================
backend           timestep the model sees  output       guidance
================  ======================  ===========  =========================================
flux              ``t / 1000`` = sigma     velocity     embedded (dev); true CFG (``true_cfg``)
flux2             ``t / 1000`` = sigma     velocity     embedded (dev); true CFG (klein base)
qwen-image        ``t / 1000`` = sigma     velocity     true CFG, rescaled to the cond. norm
sd3               ``t`` = 1000 sigma       velocity     CFG ``u + g (c - u)`` (``g > 1``)
z-image           ``(1000 - t) / 1000``    -velocity    ``c + g (c - u)`` (``g > 0``)
================  ======================  ===========  =========================================

(``t`` is the scheduler's timestep, ``1000 sigma``.) Our ``cfg_scale`` is always the standard
``u + s (c - u)``, off at 1; :meth:`Convention.pipeline_guidance` converts it to the number the
pipeline's ``guidance_scale`` / ``true_cfg_scale`` argument takes (Z-Image's is ``s - 1``).

The sigma schedule is ours (:func:`srpo.flow.sigma_schedule`: ``linspace(1, 0)`` through a static
shift). A pipeline follows it exactly when its scheduler keeps its own config with that static
shift (:func:`matching_scheduler`) and it receives :func:`pipeline_sigmas`: the unshifted
``linspace(1, 1/N, N)`` that FluxPipeline, QwenImagePipeline, Flux2Pipeline and ZImagePipeline
pass by default (the scheduler shifts them and appends 0). A resolution-dependent shift ``mu``
is the static shift ``exp(mu)``: ``e^mu s / (e^mu s + 1 - s)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

TimestepKind = Literal["sigma", "sigma_1000", "one_minus_sigma"]
GuidanceKind = Literal["cfg", "cfg_renorm", "cfg_offset"]


@dataclass(frozen=True)
class Convention:
    """How one pipeline calls its transformer."""

    pipeline: str
    timestep: TimestepKind
    guidance: GuidanceKind
    negated_output: bool = False
    embedded_guidance: bool = False

    def timestep_of(self, sigma: torch.Tensor) -> torch.Tensor:
        """The transformer's ``timestep`` argument for noise levels ``sigma``."""
        if self.timestep == "sigma":
            return sigma
        if self.timestep == "sigma_1000":
            return sigma * 1000
        return 1 - sigma

    def velocity_of(self, output: torch.Tensor) -> torch.Tensor:
        """The flow velocity ``eps - x0`` from the transformer's output."""
        return -output if self.negated_output else output

    def pipeline_guidance(self, cfg_scale: float) -> float:
        """The pipeline's guidance argument equal to our standard ``cfg_scale``."""
        return cfg_scale - 1 if self.guidance == "cfg_offset" else cfg_scale


CONVENTIONS: dict[str, Convention] = {
    "flux": Convention("FluxPipeline", "sigma", "cfg", embedded_guidance=True),
    "flux2": Convention("Flux2Pipeline", "sigma", "cfg", embedded_guidance=True),
    "qwen-image": Convention("QwenImagePipeline", "sigma", "cfg_renorm"),
    "sd3": Convention("StableDiffusion3Pipeline", "sigma_1000", "cfg"),
    "z-image": Convention("ZImagePipeline", "one_minus_sigma", "cfg_offset", negated_output=True),
}


def combine_guidance(
    kind: GuidanceKind, cond: torch.Tensor, uncond: torch.Tensor, scale: float
) -> torch.Tensor:
    """Classifier-free guidance at our standard ``scale`` (``u + s (c - u)``), in float32.

    ``cfg_renorm`` (QwenImagePipeline) rescales each token's guided vector to the conditional
    prediction's norm; ``cfg_offset`` (ZImagePipeline's ``c + g (c - u)``) is the standard form
    at ``s = g + 1``, so it needs nothing of its own here.
    """
    cond, uncond = cond.float(), uncond.float()
    guided = uncond + scale * (cond - uncond)
    if kind == "cfg_renorm":
        guided = guided * (cond.norm(dim=-1, keepdim=True) / guided.norm(dim=-1, keepdim=True))
    return guided


def pipeline_sigmas(num_steps: int) -> list[float]:
    """The unshifted ``linspace(1, 1/N, N)`` to pass as a pipeline's ``sigmas``."""
    return np.linspace(1.0, 1 / num_steps, num_steps).tolist()


def matching_scheduler(config: dict[str, Any] | None = None, shift: float = 1.0):
    """A ``FlowMatchEulerDiscreteScheduler`` with the pipeline's own config and a static shift,
    whose schedule on :func:`pipeline_sigmas` is :func:`srpo.flow.sigma_schedule`."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler.from_config(
        dict(config or {}), shift=shift, use_dynamic_shifting=False, shift_terminal=None
    )


def shift_of_mu(mu: float) -> float:
    """The static shift equal to a dynamic (exponential) shift ``mu``."""
    return math.exp(mu)
