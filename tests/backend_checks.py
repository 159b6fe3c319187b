"""The three checks every generator backend passes (issue 15, item 2), shared by
tests/test_backend_<name>.py: our Euler sampler against the pipeline's own ``__call__``, a
Direct-Align step's gradients, and the trainer's checkpoints loaded by diffusers itself."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig

from srpo.checkpoints import save_checkpoint
from srpo.direct_align import DirectAlignConfig
from srpo.models.conventions import matching_scheduler, pipeline_sigmas
from tests.factories import assert_only_transformer_trains, direct_align_step

PROMPTS = ["a red circle", "a photo of a large blue square on a white background"]
RANK, ALPHA = 4, 12.0  # alpha != rank: loading must keep the trained strength alpha / rank


def pipeline_latents(pipe, generator, steps: int, shift: float, **call) -> torch.Tensor:
    """The pipeline's ``output_type="latent"`` result at seed 0 with our schedule's sigmas."""
    pipe.scheduler = matching_scheduler(pipe.scheduler.config, shift)
    pipe.set_progress_bar_config(disable=True)
    height, width = generator.resolution
    return pipe(
        PROMPTS,
        height=height,
        width=width,
        num_inference_steps=steps,
        sigmas=pipeline_sigmas(steps),
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
        **call,
    ).images


def our_latents(generator, steps: int, shift: float) -> torch.Tensor:
    cond = generator.encode_prompts(PROMPTS)
    noise = generator.noise(len(PROMPTS), torch.Generator().manual_seed(0))
    return generator.sample(cond, noise, steps, shift)


def assert_close(ours: torch.Tensor, theirs: torch.Tensor, atol: float = 2e-5) -> None:
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    assert ours.abs().max() > 0.1  # not a trivially zero rollout
    error = (ours - theirs).abs().max().item()
    assert error < atol, f"max |ours - pipeline| = {error:.2e}"


def check_direct_align(generator, reward) -> None:
    """Both branches of SRPO on the generator: finite non-zero gradients on the transformer,
    none on the VAE or the reward."""
    generator.transformer.requires_grad_(True)
    objective = direct_align_step(
        generator,
        reward,
        DirectAlignConfig(inversion=True),
        ("realistic photo", "painting"),
        num_steps=2,
        shift=3.0,
    )
    assert set(objective.rewards) == {"denoise", "inversion"}
    assert torch.isfinite(objective.loss)
    assert_only_transformer_trains(generator, reward)


def add_trained_lora(transformer, targets: list[str]) -> None:
    """Adapters at rank 4, alpha 12, with non-zero B (as after training)."""
    transformer.add_adapter(LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=targets))
    with torch.no_grad():
        for name, param in transformer.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.3)


def save_lora(root: Path, transformer) -> Path:
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params)
    return save_checkpoint(root, 1, transformer, True, optimizer, {"config": {}}).path


def save_full(root: Path, transformer) -> Path:
    optimizer = torch.optim.AdamW(transformer.parameters())
    return save_checkpoint(root, 2, transformer, False, optimizer, {"config": {}}).path


def perturb(module) -> None:
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn_like(param) * 0.01)


def assert_same_parameters(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
