"""A LoRA checkpoint of a random small FLUX config loads into diffusers' FluxPipeline."""

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
from peft import LoraConfig

from srpo.checkpoints import save_checkpoint
from tests.factories import small_flux_transformer, small_text_encoders, small_vae


def pipeline(transformer):
    encoders = small_text_encoders()
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=small_vae(),
        text_encoder=encoders.text_encoder,
        tokenizer=encoders.tokenizer,
        text_encoder_2=encoders.text_encoder_2,
        tokenizer_2=encoders.tokenizer_2,
        transformer=transformer,
    )


def render(pipe):
    return pipe(
        "a red circle",
        height=32,
        width=32,
        num_inference_steps=2,
        max_sequence_length=24,
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
    ).images


def test_lora_checkpoint_loads_into_flux_pipeline_and_changes_output(tmp_path):
    trained = small_flux_transformer()
    trained.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    )
    with torch.no_grad():
        for name, param in trained.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    optimizer = torch.optim.AdamW([p for p in trained.parameters() if p.requires_grad])
    checkpoint = save_checkpoint(tmp_path, 1, trained, True, optimizer, {"config": {}})

    pipe = pipeline(small_flux_transformer())
    before = render(pipe)
    pipe.load_lora_weights(checkpoint.path)
    after = render(pipe)
    assert before.shape == after.shape == (1, 3, 32, 32)
    assert (before - after).abs().max() > 1e-3
