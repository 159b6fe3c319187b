"""The method registry: a method's name -> its update class and its authors' optimiser.

Every update has one signature (:class:`srpo.update.Update`) and is built from one
:class:`srpo.update.UpdateInputs`, so the trainer never switches on the method's name.
"""

from __future__ import annotations

from dataclasses import dataclass

from srpo.baselines import DRaFTUpdate, GRPOUpdate, ReFLUpdate
from srpo.direct_align import DirectAlignUpdate
from srpo.update import Update, UpdateInputs


@dataclass(frozen=True)
class OptimizerDefaults:
    """AdamW settings a method's authors train with (used where the config leaves them unset)."""

    lr: float
    weight_decay: float
    grad_clip: float


# SRPO paper / official scripts: lr 5e-6, weight decay 1e-4, grad clip 0.1.
PAPER = OptimizerDefaults(lr=5e-6, weight_decay=1e-4, grad_clip=0.1)


@dataclass(frozen=True)
class Method:
    """One registered method."""

    update: type
    optimizer: OptimizerDefaults


METHODS: dict[str, Method] = {
    "srpo": Method(DirectAlignUpdate, PAPER),
    "direct_align": Method(DirectAlignUpdate, PAPER),
    # THUDM/ImageReward scripts/train_refl.sh: --learning_rate 1e-5 --max_grad_norm 1;
    # ReFL.py's AdamW weight decay default 1e-2.
    "refl": Method(ReFLUpdate, OptimizerDefaults(1e-5, 1e-2, 1.0)),
    # DRaFT's FLUX/SD3 recipe is not published; it trains with the paper's shared setup.
    "draft": Method(DRaFTUpdate, PAPER),
    # DanceGRPO finetune_flux_grpo.sh: --learning_rate 1e-5 --weight_decay 0.0001
    # --max_grad_norm 1.0.
    "grpo": Method(GRPOUpdate, OptimizerDefaults(1e-5, 1e-4, 1.0)),
}


def method(name: str) -> Method:
    """The registered method called ``name``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def make_update(run: UpdateInputs) -> Update:
    """The per-micro-batch update of ``run.config.method``."""
    return method(run.config.method).update(run)
