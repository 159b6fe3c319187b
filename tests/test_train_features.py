"""Trainer features beyond the core loop: offline mode, samples, TensorBoard, baseline methods."""

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from srpo.checkpoints import LORA_FILE, latest_checkpoint
from srpo.direct_align import DirectAlignUpdate
from srpo.evaluate import judged_rates
from srpo.models.tiny import load_tiny_generator
from srpo.offline import encode_pool, read_image_folder
from srpo.sampling import sample_images
from srpo.tiny_world.data import heldout
from srpo.train import Callback, draw, train
from srpo.update import UpdateInputs
from tests.test_train import config


def write_images(folder, n=3, captions=True):
    folder.mkdir()
    batch = heldout(n)
    for i, (image, caption) in enumerate(zip(batch.images, batch.captions, strict=True)):
        array = (image * 255).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(array).save(folder / f"img{i}.png")
        if captions and i != 1:
            (folder / f"img{i}.txt").write_text(caption)
    return batch


def test_offline_pool_reads_folder_and_captions(smoke_world, tmp_path):
    batch = write_images(tmp_path / "real")
    pixels, captions = read_image_folder(tmp_path / "real", (64, 64))
    assert pixels.shape == (3, 3, 64, 64)
    assert torch.allclose(pixels, batch.images, atol=1 / 255)
    assert captions == [batch.captions[0], None, batch.captions[2]]


def test_offline_update_uses_the_real_images_and_fresh_noise(smoke_world, tmp_path):
    write_images(tmp_path / "real")
    cfg = config(smoke_world, offline_images=str(tmp_path / "real"))
    generator = load_tiny_generator(smoke_world)
    pool = encode_pool(generator, *read_image_folder(tmp_path / "real", (64, 64)))
    update = DirectAlignUpdate(UpdateInputs(cfg, generator, None, pool))
    uncaptioned = 0
    for step in range(4):
        chosen = draw(cfg, step, 0, 0, cfg.prompt_list())
        x0, eps, prompts = update.clean_latents(chosen)
        for x, prompt in zip(x0, prompts, strict=True):
            j = next(j for j in range(len(pool)) if torch.equal(x, pool.latents[j]))
            # An image without a caption trains on the empty prompt, never a random one.
            assert prompt == (pool.captions[j] or "")
            uncaptioned += pool.captions[j] is None
        assert eps.shape == x0.shape and not torch.equal(eps, x0)
    assert uncaptioned, "no uncaptioned image was drawn; the check above would be vacuous"


def test_offline_images_without_captions_are_refused_when_captions_are_required(
    smoke_world, tmp_path
):
    write_images(tmp_path / "real")
    cfg = config(smoke_world, offline_images="real", offline_captions="required")
    with pytest.raises(ValueError, match="1 of 3 images have no caption"):
        train(cfg, tmp_path / "run", config_dir=tmp_path)


def test_offline_training_runs_and_moves_weights(smoke_world, tmp_path):
    write_images(tmp_path / "real")
    train(
        config(smoke_world, offline_images="real", steps=2), tmp_path / "run", config_dir=tmp_path
    )
    weights = load_file(str(latest_checkpoint(tmp_path / "run").path / LORA_FILE))
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda folder: folder.mkdir(), "holds no"),
        (lambda folder: None, "is not a folder"),
        (lambda folder: (folder.mkdir(), (folder / "x.png").write_bytes(b"not a png")), "x.png"),
    ],
)
def test_offline_folder_errors_are_clear(smoke_world, tmp_path, setup, message):
    setup(tmp_path / "real")
    with pytest.raises(ValueError, match=message):
        train(config(smoke_world, offline_images="real"), tmp_path / "run", config_dir=tmp_path)
    assert latest_checkpoint(tmp_path / "run") is None


class Recorder(Callback):
    def __init__(self):
        self.samples, self.progress = [], []

    def on_samples(self, samples):
        self.samples.append(samples)

    def on_progress(self, progress):
        self.progress.append(progress)


def test_samples_at_fixed_seeds_from_the_base_model_on(smoke_world, tmp_path):
    recorder = Recorder()
    cfg = config(smoke_world, sample_every=2, eval_prompts=["a red circle"], eval_seeds=[5, 6])
    train(cfg, tmp_path / "run", callbacks=[recorder])
    assert [s.step for s in recorder.samples] == [0, 2, 4]
    assert all(s.path.is_file() and s.images.shape == (2, 3, 64, 64) for s in recorder.samples)
    assert recorder.samples[0].seeds == [5, 6]
    base = sample_images(load_tiny_generator(smoke_world), ["a red circle"] * 2, [5, 6], 3, 1.0)
    assert torch.allclose(recorder.samples[0].images, base, atol=1e-5)
    assert not torch.allclose(recorder.samples[-1].images, base, atol=1e-3)
    # The hacking monitor's gold signals, measured on the same images (the judge: tiny world).
    for samples in recorder.samples:
        expected = judged_rates(samples.images, samples.prompts, "photo", "painting")
        assert samples.metrics["hack_cast"] == pytest.approx(expected["hack_cast"])
        assert samples.metrics["gold"] == pytest.approx(expected["judged_positive_rate"])
        assert {"saturation", "magenta_cast", "high_frequency", "brightness"} <= set(
            samples.metrics
        )


def test_tensorboard_logs_the_monitor_at_sample_steps(smoke_world, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = config(smoke_world, tensorboard=True, steps=2, sample_every=1, eval_seeds=[0])
    train(cfg, tmp_path / "run")
    (folder,) = {f.parent for f in (tmp_path / "run").rglob("events.out.tfevents.*")}
    events = EventAccumulator(str(folder))
    events.Reload()
    assert [e.step for e in events.Scalars("monitor/hack_cast")] == [0, 1, 2]
    assert {"monitor/gold", "monitor/drift/hack_cast"} <= set(events.Tags()["scalars"])
    # the training reward beside it, from the first trained sample step on
    assert [e.step for e in events.Scalars("monitor/train_reward")] == [1, 2]


def test_tensorboard_logs_every_update(smoke_world, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(config(smoke_world, tensorboard=True, steps=3), tmp_path / "run")
    files = list((tmp_path / "run").rglob("events.out.tfevents.*"))
    assert files
    events = EventAccumulator(str(files[0].parent))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3]
    assert {"reward/mean", "grad_norm"} <= set(events.Tags()["scalars"])


@pytest.mark.parametrize(
    ("method", "section"),
    [
        ("refl", {"steps": 4}),
        ("draft", {"steps": 3}),
        ("grpo", {"steps": 3, "group_size": 2, "samples_per_step": 2}),
    ],
)
def test_baseline_methods_train_through_the_same_loop(smoke_world, tmp_path, method, section):
    recorder = Recorder()
    cfg = config(smoke_world, method=method, steps=1, batch_size=1, **{method: section})
    result = train(cfg, tmp_path / "run", callbacks=[recorder])
    assert result.step == 1 and recorder.progress[0].reward_std >= 0
    weights = load_file(str(latest_checkpoint(tmp_path / "run").path / LORA_FILE))
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())
    assert latest_checkpoint(tmp_path / "run").manifest["config"]["method"] == method
