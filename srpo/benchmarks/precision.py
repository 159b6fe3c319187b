"""``srpo bench precision``: does the bf16 policy train like fp32, and is its flow math exact?

In one run, the same small random FLUX config (the real diffusers classes) takes the same
Direct-Align updates (same noise, ``s*``, rewards) three ways: in fp32; under the bf16 policy
(fp32 masters and AdamW state, bf16 autocast forward, bf16 frozen parts, fp32 flow math); and,
for contrast, with AdamW stepping bf16 weights directly (what a bf16-loaded model does without
the policy). ``update_ratio`` is the policy's mean absolute weight change over fp32's (goal
0.9..1.1); ``bf16_weights_ratio`` the same for the unprotected run. ``recovery_error`` is the
RMS error of Direct-Align's x0 recovery under the policy when the velocity is exact (goal
below 1e-5; bf16 flow math gives about 1e-1).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKL, FluxTransformer2DModel

from srpo import flow
from srpo.direct_align import branch
from srpo.models.flux import FluxGenerator
from srpo.precision import Precision, upcast_trainable

TRANSFORMER = {
    "patch_size": 1,
    "in_channels": 16,
    "num_layers": 2,
    "num_single_layers": 2,
    "attention_head_dim": 16,
    "num_attention_heads": 4,
    "joint_attention_dim": 64,
    "pooled_projection_dim": 32,
    "guidance_embeds": True,
    "axes_dims_rope": (4, 6, 6),
}
VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D", "DownEncoderBlock2D"),
    "up_block_types": ("UpDecoderBlock2D", "UpDecoderBlock2D"),
    "block_out_channels": (8, 16),
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 4,
    "scaling_factor": 0.5,
    "shift_factor": 0.1,
}


class RandomPrompts:
    """FLUX-shaped prompt embeddings that depend only on the prompt (no text encoder)."""

    def encode(self, prompts):
        rows = [torch.Generator().manual_seed(sum(map(ord, p))) for p in prompts]
        sequence = torch.stack(
            [torch.randn(8, TRANSFORMER["joint_attention_dim"], generator=g) for g in rows]
        )
        pooled = torch.stack(
            [torch.randn(TRANSFORMER["pooled_projection_dim"], generator=g) for g in rows]
        )
        return sequence, pooled


def random_flux(precision: str, seed: int = 0, resolution: int = 32) -> FluxGenerator:
    """A small random FLUX generator stored in the policy's frozen dtype, as the loader does."""
    policy = Precision.of(precision)
    torch.manual_seed(seed)
    transformer, vae = FluxTransformer2DModel(**TRANSFORMER), AutoencoderKL(**VAE)
    if policy.frozen != torch.float32:
        transformer, vae = transformer.to(policy.frozen), vae.to(policy.frozen)
    return FluxGenerator(
        transformer, vae, RandomPrompts(), (resolution, resolution), 3.5, precision=policy
    )


def _train(generator: FluxGenerator, steps: int, lr: float, upcast: bool) -> float:
    """Mean absolute weight change after ``steps`` AdamW steps on a Direct-Align-shaped loss."""
    transformer = generator.transformer.requires_grad_(True).train()
    params = list(transformer.parameters())
    if upcast:
        upcast_trainable(params, torch.float32)
    before = [p.detach().float().clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    prompts = ["a red circle", "a blue square"]
    cond = generator.encode_prompts(prompts)
    for step in range(steps):
        rng = torch.Generator().manual_seed(step)
        eps = generator.noise(2, rng)
        x0 = generator.noise(2, rng) * 0.5
        s_star = torch.full((2,), 0.8)
        result = branch(generator, x0, eps, s_star, 0.05, cond, "denoise")
        # A fixed target stands in for the reward: its gradient reaches every weight.
        loss = (generator.decode(result.x0_hat) - 0.5).square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    changes = [
        (p.detach().float() - b).abs().flatten() for p, b in zip(params, before, strict=True)
    ]
    return torch.cat(changes).mean().item()


class ExactVelocity:
    """The generator with its velocity replaced by the true one, in the dtype it returns."""

    def __init__(self, generator: FluxGenerator, x0: torch.Tensor, eps: torch.Tensor) -> None:
        self.generator, self.x0, self.eps = generator, x0, eps

    def velocity(self, latents, sigma, cond, guidance=None):
        real = self.generator.velocity(latents, sigma, cond, guidance)
        return flow.true_velocity(self.x0, self.eps).to(real.dtype)


def recovery_error(precision: str = "bf16", s_star: float = 0.96, d: float = 0.022) -> float:
    """RMS x0 recovery error of both branches with the exact velocity, under ``precision``.

    ``x0`` is a rollout of the model and ``eps`` its noise, as in the trainer, so the error
    includes every dtype the noise, the rollout and the branch arithmetic pass through.
    """
    generator = random_flux(precision)
    cond = generator.encode_prompts(["a red circle", "a blue square"])
    eps = generator.noise(2, torch.Generator().manual_seed(7))
    x0 = generator.sample(cond, eps, num_steps=4, shift=3.0)
    oracle = ExactVelocity(generator, x0, eps)
    errors = []
    with torch.no_grad():
        for direction in ("denoise", "inversion"):
            result = branch(oracle, x0, eps, s_star, d, cond, direction)
            errors.append((result.x0_hat.double() - x0.double()).square().mean().sqrt().item())
    return max(errors)


def bench_precision(steps: int = 10, lr: float = 5e-6) -> dict[str, Any]:
    """One JSON-ready row: the three runs' weight changes, their ratios, the recovery error."""
    fp32 = _train(random_flux("fp32"), steps, lr, upcast=True)
    policy = _train(random_flux("bf16"), steps, lr, upcast=True)
    bf16_weights = _train(random_flux("bf16"), steps, lr, upcast=False)
    return {
        "steps": steps,
        "lr": lr,
        "mean_change_fp32": fp32,
        "mean_change_bf16_policy": policy,
        "mean_change_bf16_weights": bf16_weights,
        "update_ratio": round(policy / fp32, 4),
        "bf16_weights_ratio": round(bf16_weights / fp32, 4),
        "recovery_error": recovery_error("bf16"),
        "recovery_error_fp32": recovery_error("fp32"),
    }
