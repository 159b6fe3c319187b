"""The comparison methods on the generator and reward protocols: ReFL, DRaFT-K/LV, GRPO."""

from srpo.baselines.draft import DRaFTConfig, DRaFTUpdate, draft_chain, renoised_last_step
from srpo.baselines.grpo import (
    GRPOConfig,
    GRPOUpdate,
    clipped_loss,
    group_advantages,
    sde_rollout,
    sde_step,
    step_log_prob,
)
from srpo.baselines.refl import ReFLConfig, ReFLUpdate, refl_predict, refl_stop_range

__all__ = [
    "DRaFTConfig",
    "DRaFTUpdate",
    "GRPOConfig",
    "GRPOUpdate",
    "ReFLConfig",
    "ReFLUpdate",
    "clipped_loss",
    "draft_chain",
    "group_advantages",
    "refl_predict",
    "refl_stop_range",
    "renoised_last_step",
    "sde_rollout",
    "sde_step",
    "step_log_prob",
]
