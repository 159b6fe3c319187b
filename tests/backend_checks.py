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
from tests.factories import direct_align_step

PROMPTS = ["a red circle", "a photo of a large blue square on a white background"]
RANK, ALPHA = 4, 12.0  # alpha != rank: loading must keep the trained strength alpha / rank


def pipeline_latents(pipe, generator, steps: int, shift: float, **call) -> torch.Tensor:
    """The pipeline's ``output_type="latent"`` result at seed 0 with our schedule's sigmas."""
    pipe.scheduler = matching_scheduler(pipe.scheduler.config, shift)
    pipe.set_progress_bar_config(disable=True)
    height, width = generator.resolution
    return pipe(
        # a copy: ZImagePipeline rewrites its prompt list in place; by name: FLUX.2's first
        # positional argument is a reference image
        prompt=list(PROMPTS),
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


def structurally_unused(generator) -> set[str]:
    """Transformer parameters no velocity depends on (e.g. the text stream's output layers of
    the last joint block in Qwen-Image and FLUX.2): they get no gradient from any loss."""
    generator.transformer.requires_grad_(True)
    cond = generator.encode_prompts(PROMPTS[:1])
    x = generator.noise(1, torch.Generator().manual_seed(5))
    generator.velocity(x, torch.tensor([0.6]), cond).square().sum().backward()
    unused = {n for n, p in generator.transformer.named_parameters() if p.grad is None}
    generator.transformer.zero_grad(set_to_none=True)
    return unused


def check_direct_align(generator, reward) -> None:
    """Both branches of SRPO on the generator: finite non-zero gradients on the transformer
    (every parameter the velocity depends on), none on the VAE or the reward."""
    unused = structurally_unused(generator)
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
    named = dict(generator.transformer.named_parameters())
    grads = [p.grad for n, p in named.items() if n not in unused]
    assert len(unused) < len(named) // 4
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    assert all(named[n].grad is None for n in unused)
    assert all(p.grad is None for p in reward.parameters())
    assert all(p.grad is None for p in generator.vae.parameters())
    assert all(p.grad is None for p in text_encoder_parameters(generator.prompt_encoder))


def text_encoder_parameters(encoder) -> list[torch.nn.Parameter]:
    modules = [v for v in vars(encoder).values() if isinstance(v, torch.nn.Module)]
    return [p for m in modules for p in m.parameters()]


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
