"""The comparison methods on the generator and reward protocols: ReFL, DRaFT-K/LV, GRPO."""

from srpo.baselines.common import UpdateStats
from srpo.baselines.draft import draft_chain, draft_update, renoised_last_step
from srpo.baselines.grpo import (
    clipped_loss,
    group_advantages,
    grpo_update,
    sde_rollout,
    sde_step,
    step_log_prob,
)
from srpo.baselines.refl import refl_predict, refl_stop_range, refl_update
from srpo.baselines.update import METHODS, baseline_update

__all__ = [
    "METHODS",
    "UpdateStats",
    "baseline_update",
    "clipped_loss",
    "draft_chain",
    "draft_update",
    "group_advantages",
    "grpo_update",
    "refl_predict",
    "refl_stop_range",
    "refl_update",
    "renoised_last_step",
    "sde_rollout",
    "sde_step",
    "step_log_prob",
]
