"""One precision policy for every method and every launch (method.md, "at scale").

The official SRPO code keeps fp32 master weights and runs the transformer's forward under
bf16 autocast; the Direct-Align step and the recovery are fp32. Stepping AdamW on bf16
weights at lr 5e-6 rounds most updates away (a bf16 weight of 0.02 has a spacing of about
1e-4), so the trainable parameters and the optimiser state are always fp32. Under ``bf16``:

- trainable parameters (the full transformer, or the LoRA adapters) and AdamW state: fp32;
- the transformer's forward: bf16 autocast (inputs cast to bf16 at the transformer only);
- frozen parts (VAE, reward, text encoders, a frozen base under LoRA): stored in bf16;
- flow math (noise, clean latents, Euler steps, recovery, rollout accumulation): fp32.

``fp32`` runs everything in fp32 (the tiny world's default on CPU).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

PrecisionName = Literal["fp32", "bf16"]


@dataclass(frozen=True)
class Precision:
    """Which dtype each part of a run uses."""

    name: PrecisionName
    trainable: torch.dtype
    frozen: torch.dtype
    compute: torch.dtype
    flow_math: torch.dtype = torch.float32

    @classmethod
    def of(cls, name: str) -> Precision:
        """The policy called ``name`` (``fp32`` or ``bf16``)."""
        if name == "fp32":
            return cls("fp32", torch.float32, torch.float32, torch.float32)
        if name == "bf16":
            return cls("bf16", torch.float32, torch.bfloat16, torch.bfloat16)
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {name!r}")

    def autocast(self, device: torch.device | str) -> contextlib.AbstractContextManager:
        """Autocast to the compute dtype on ``device`` (a no-op under fp32)."""
        if self.compute == torch.float32:
            return contextlib.nullcontext()
        kind = torch.device(device).type
        return torch.autocast(kind, dtype=self.compute)

    def describe(self) -> dict[str, str]:
        """Dtype names of the parts, as ``srpo explain`` shows them."""
        return {
            "trainable": dtype_name(self.trainable),
            "frozen": dtype_name(self.frozen),
            "compute": dtype_name(self.compute),
            "flow_math": dtype_name(self.flow_math),
        }


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")


def upcast_trainable(parameters: Iterable[nn.Parameter], dtype: torch.dtype) -> list[nn.Parameter]:
    """Cast trainable parameters in place (same ``Parameter`` objects) to ``dtype``."""
    parameters = list(parameters)
    for parameter in parameters:
        if parameter.dtype != dtype:
            parameter.data = parameter.data.to(dtype)
    return parameters
