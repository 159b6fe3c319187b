"""Reward Lab on the shipped tiny world: scores, SRP, saliency, sweep, uploads."""

import io
import struct
import threading
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from srpo import lab, lab_uploads
from srpo.sampling import sample_images
from srpo.tiny_world.tokenizer import UNK_ID

PROMPT = "a red circle"


@pytest.fixture(scope="module")
def reward():
    from srpo.rewards import load_reward

    return load_reward("tiny")


@pytest.fixture(scope="module")
def generator():
    from srpo.models import load_generator

    return load_generator("tiny")


@pytest.fixture(scope="module")
def pixels(generator):
    # One thread: on a shared 2-core machine two contended torch threads sample ~10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return lab.sample_lab_images(generator, PROMPT, list(range(8)), steps=20, shift=1.0)
    finally:
        torch.set_num_threads(threads)


def text(reward, word=None):
    return reward.encode_text([f"{word}. {PROMPT}" if word else PROMPT])[0]


def test_scores_and_srp_equal_the_hand_computation_from_embeddings(reward, pixels):
    k = 0.25
    result = lab.preview(reward, pixels, PROMPT, ["photo", "bright"], ["painting", "flat"], k=k)
    with torch.no_grad():
        image = reward.encode_image(pixels)
    assert torch.allclose(result.plain, image @ text(reward), atol=1e-5)
    assert torch.allclose(result.positive_scores[1], image @ text(reward, "bright"), atol=1e-5)
    assert torch.allclose(result.negative_scores[0], image @ text(reward, "painting"), atol=1e-5)
    hand = torch.stack(
        [
            torch.stack(
                [
                    image @ ((1 + k) * text(reward, pos) - text(reward, neg))
                    for neg in result.negative
                ]
            )
            for pos in result.positive
        ]
    )
    assert torch.allclose(result.pair_srp, hand, atol=1e-5)
    assert torch.allclose(result.srp, hand.mean(dim=(0, 1)), atol=1e-5)
    assert result.pair_srp.abs().max() > 0.05


def test_swapping_positive_and_negative_with_k_zero_flips_the_sign(reward, pixels):
    forward = lab.preview(reward, pixels, PROMPT, ["photo"], ["painting"], k=0.0)
    swapped = lab.preview(reward, pixels, PROMPT, ["painting"], ["photo"], k=0.0)
    assert torch.allclose(swapped.srp, -forward.srp, atol=1e-6)
    assert forward.srp.abs().max() > 0.05
    with_k = lab.preview(reward, pixels, PROMPT, ["painting"], ["photo"], k=0.3)
    assert not torch.allclose(with_k.srp, -forward.srp, atol=1e-3)


def test_rankings_before_and_after_follow_the_scores(reward, pixels):
    result = lab.preview(reward, pixels, PROMPT, ["photo"], ["painting"], saliency=False)
    assert result.saliency is None
    assert sorted(result.rank_plain) == list(range(8))
    assert [float(result.plain[i]) for i in result.rank_plain] == sorted(
        result.plain.tolist(), reverse=True
    )
    assert [float(result.srp[i]) for i in result.rank_srp] == sorted(
        result.srp.tolist(), reverse=True
    )
    assert result.rank_plain != result.rank_srp
    rows = result.rows()
    assert [row["rank after"] for row in rows] == [result.rank_srp.index(n) + 1 for n in range(8)]
    assert rows[3]["r(photo. p)"] == pytest.approx(float(result.positive_scores[0, 3]))
    assert rows[3]["srp(photo / painting)"] == pytest.approx(float(result.srp[3]))
    assert lab.ranking(torch.tensor([1.0, 3.0, 1.0, 2.0])) == [1, 3, 0, 2]


class CountingReward:
    """The tiny reward behind the protocol, counting the texts and image passes it gets."""

    def __init__(self, inner):
        self.inner, self.name, self.scale = inner, "counting", inner.scale
        self.texts, self.image_passes = [], 0

    def encode_text(self, texts):
        self.texts.extend(texts)
        return self.inner.encode_text(texts)

    def encode_image(self, pixels):
        self.image_passes += 1
        return self.inner.encode_image(pixels)

    def score(self, pixels, texts):
        raise AssertionError("the lab scores from embeddings, not per text")


def test_preview_encodes_each_distinct_text_once_and_images_in_one_pass(reward, pixels):
    counting = CountingReward(reward)
    result = lab.preview(counting, pixels, PROMPT, ["photo", " photo.", "bright"], "painting")
    assert result.positive == ("photo", "bright") and result.negative == ("painting",)
    assert sorted(counting.texts) == sorted(
        [PROMPT, f"photo. {PROMPT}", f"bright. {PROMPT}", f"painting. {PROMPT}"]
    )
    assert counting.image_passes == 1
    direct = lab.preview(reward, pixels, PROMPT, ["photo", "bright"], ["painting"])
    assert torch.allclose(result.srp, direct.srp) and torch.allclose(
        result.saliency, direct.saliency
    )
    counting.texts.clear()
    lab.sensitivity_sweep(counting, pixels, PROMPT, ["photo", "photo", "zebra"])
    assert len(counting.texts) == 3 and counting.image_passes == 2


def _srp_of(reward, pixels, k):
    with torch.no_grad():
        image = reward.encode_image(pixels)
    return image @ ((1 + k) * text(reward, "photo") - text(reward, "painting"))


def test_saliency_is_the_gradient_of_the_srp_reward(reward, pixels):
    k = 0.1
    result = lab.preview(reward, pixels, PROMPT, ["photo"], ["painting"], k=k)
    saliency = result.saliency
    assert saliency.shape == (8, 64, 64) and (saliency >= 0).all()
    # Per-image independence: one backward over the batch gives each image's own gradient.
    alone = lab.preview(reward, pixels[5:6], PROMPT, ["photo"], ["painting"], k=k)
    assert torch.allclose(alone.saliency[0], saliency[5], rtol=1e-3, atol=1e-7)
    eps = 2e-3
    interior = (pixels > 2 * eps) & (pixels < 1 - 2 * eps)
    checked = 0
    for n in (0, 3):
        magnitude = saliency[n] * interior[n].all(dim=0)
        for flat in torch.topk(magnitude.flatten(), 3).indices.tolist():
            y, x = divmod(flat, 64)
            diffs = []
            for c in range(3):
                up, down = pixels[n : n + 1].clone(), pixels[n : n + 1].clone()
                up[0, c, y, x] += eps
                down[0, c, y, x] -= eps
                diffs.append((_srp_of(reward, up, k) - _srp_of(reward, down, k)) / (2 * eps))
            numeric = torch.cat(diffs).norm()
            assert float(numeric) == pytest.approx(float(saliency[n, y, x]), rel=0.05)
            checked += 1
    assert checked == 6


def test_overlay_blends_heat_only_where_the_gradient_is(pixels):
    image = pixels[0]
    heat = torch.zeros(64, 64)
    heat[10:20, 30:40] = 1.0
    picture = lab.saliency_overlay(image, heat, alpha=0.7)
    assert picture.dtype == np.uint8 and picture.shape == (64, 64, 3)
    plain = np.round(image.permute(1, 2, 0).numpy() * 255)
    assert np.abs(picture[40:, :].astype(float) - plain[40:, :]).max() <= 1
    hot = 0.3 * plain[15, 35] + 0.7 * 255
    assert np.abs(picture[15, 35].astype(float) - hot).max() <= 1
    assert lab.saliency_overlay(image, heat, upscale=3).shape == (192, 192, 3)
    with pytest.raises(ValueError, match="map"):
        lab.saliency_overlay(image, heat[:32])


def test_overlay_is_smooth_and_interpolated_and_has_a_colour_scale(pixels):
    image = pixels[0]
    speck = torch.zeros(64, 64)
    speck[32, 32] = 1.0
    spread = lab.smooth_map(speck, 2.0)
    assert float(spread.sum()) == pytest.approx(1.0, abs=1e-4)  # blurred, not lost
    assert float(spread[32, 35]) > 0 and float(spread[32, 32]) < 0.1
    assert float(lab.smooth_map(speck, 0)[32, 32]) == 1.0
    # a hot half: upscaled, the edge ramps through values between, not one blocky step
    half = torch.zeros(64, 64)
    half[:, 32:] = 1.0
    red = lab.saliency_overlay(image * 0, half, alpha=1.0, upscale=3, sigma=0)[:, :, 0]
    edge = red[30, 90:102].astype(int)
    assert {0, 255} < set(edge.tolist()) and (np.diff(edge) >= 0).all()  # steps between
    legend = lab.colour_scale(256, 44)
    assert legend.size == (256, 44)
    assert legend.getpixel((0, 5)) == (0, 0, 0) and legend.getpixel((255, 5)) == (255, 255, 255)


def test_overlays_of_a_preview_are_pil_images(reward, pixels):
    result = lab.preview(reward, pixels[:2], PROMPT, ["photo"], ["painting"])
    pictures = lab.overlays(result, pixels[:2], upscale=2)
    assert [p.size for p in pictures] == [(128, 128), (128, 128)]
    no_map = lab.preview(reward, pixels[:2], PROMPT, ["photo"], ["painting"], saliency=False)
    with pytest.raises(ValueError, match="without saliency"):
        lab.overlays(no_map, pixels[:2])


def test_sweep_flags_words_the_reward_cannot_tell_apart_but_not_style_words(reward, pixels):
    assert UNK_ID in reward.tokenizer(["zebra"]).input_ids[0]
    result = lab.sensitivity_sweep(reward, pixels, PROMPT, ["photo", "painting", "zebra"])
    assert result.flagged == ["zebra"]
    by_word = {w.word: w for w in result.words}
    assert result.threshold == pytest.approx(0.35 * max(w.effect for w in result.words))
    for entry in result.words:
        assert entry.effect == pytest.approx(np.hypot(entry.mean_shift, entry.spread))
    shifts = (
        reward.encode_image(pixels).detach() @ (text(reward, "painting") - text(reward, None))
    ).double()
    assert by_word["painting"].mean_shift == pytest.approx(float(shifts.mean()), abs=1e-5)
    assert by_word["painting"].spread == pytest.approx(float(shifts.std(correction=0)), abs=1e-5)
    # Repeating the prompt, or a word of it, barely moves the reward either.
    candidates = ["photo", "painting", "bright", "zebra", "red", PROMPT]
    repeated = lab.sensitivity_sweep(reward, pixels, PROMPT, candidates)
    assert repeated.flagged == ["zebra", "red", PROMPT]
    # A one-word sweep is judged by the absolute floor alone.
    assert lab.sensitivity_sweep(reward, pixels, PROMPT, ["zebra"]).flagged == []
    assert lab.sensitivity_sweep(reward, pixels, PROMPT, ["zebra"], absolute=0.1).flagged == [
        "zebra"
    ]


def test_sweep_names_words_the_tokenizer_does_not_know_and_prompts_it_cuts(reward, pixels):
    # "zebra" and "banana" both read as <unk>: the sweep says so instead of two equal rows
    result = lab.sensitivity_sweep(reward, pixels, PROMPT, ["photo", "zebra", "banana"])
    by_word = {w.word: w for w in result.words}
    assert by_word["zebra"].effect == pytest.approx(by_word["banana"].effect)
    assert result.unknown == ["zebra", "banana"]
    assert by_word["zebra"].unknown == ("zebra",) and by_word["photo"].unknown == ()
    limit = reward.text_coverage(PROMPT).limit
    long_prompt = " ".join(["red"] * (limit - 3))  # with <bos>, <eos>: one token to spare
    assert not reward.text_coverage(long_prompt).truncated
    cut = lab.sensitivity_sweep(reward, pixels, long_prompt, ["photo", "bright"])
    assert cut.truncated == ["photo", "bright"] and cut.unknown == []


def test_text_coverage_reads_open_clips_byte_level_tokenizer():
    import open_clip

    from srpo.rewards.base import tokenizer_coverage

    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    short = tokenizer_coverage(tokenizer, "a zebra eating a banana", 77)
    assert short.unknown == () and not short.truncated and short.tokens == 7
    assert tokenizer_coverage(tokenizer, "photo " * 80, 77).truncated


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prompt": "   "}, "prompt is empty"),
        ({"positive": []}, "positive words are empty"),
        ({"negative": ["ok", " "]}, "empty word"),
        ({"positive": ["photo"], "negative": ["photo"]}, "both positive and negative"),
        ({"positive": [f"w{i}" for i in range(17)]}, "at most 16"),
        ({"k": -0.1}, "k must be"),
        ({"k": float("nan")}, "k must be"),
        ({"pixels": torch.rand(2, 64, 64)}, r"\[B, 3, H, W\]"),
        ({"pixels": torch.rand(2, 1, 64, 64)}, r"\[B, 3, H, W\]"),
        ({"pixels": 2 * torch.ones(2, 3, 64, 64)}, r"\[0, 1\]"),
        ({"pixels": torch.ones(2, 3, 64, 64, dtype=torch.uint8)}, "floats"),
        ({"pixels": torch.rand(2, 3, 4, 64)}, "each side"),
        ({"pixels": torch.zeros(65, 3, 8, 8)}, "at most 64"),
        ({"pixels": torch.zeros(0, 3, 8, 8)}, "no images"),
    ],
)
def test_preview_rejects_bad_input_with_clear_messages(reward, change, message):
    args = {
        "pixels": torch.rand(2, 3, 64, 64),
        "prompt": PROMPT,
        "positive": ["photo"],
        "negative": ["painting"],
        "k": 0.1,
    }
    args.update(change)
    with pytest.raises(ValueError, match=message):
        lab.preview(reward, **args)


def test_sampling_from_a_handler_thread_runs_on_single_threaded_workers(generator, monkeypatch):
    """Issue 17: in a Gradio handler thread (not the main one) torch's OpenMP team slept and
    woke at each of the sampler's parallel regions, 2.3x slower; the Lab's sampling now splits
    the batch over workers with one torch thread, gives the same pixels and counts every step."""
    seen, told = [], []
    sample = generator.sample

    def spy(cond, noise, *args, **kwargs):
        seen.append((threading.current_thread().name, torch.get_num_threads(), len(noise)))
        return sample(cond, noise, *args, **kwargs)

    monkeypatch.setattr(generator, "sample", spy)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        found, fresh = {}, {}

        def handler() -> None:
            found["pixels"] = lab.sample_lab_images(
                generator, PROMPT, list(range(5)), 4, 1.0, lambda *step: told.append(step)
            )

        worker = threading.Thread(target=handler)
        worker.start()
        worker.join()
        later = threading.Thread(target=lambda: fresh.update(threads=torch.get_num_threads()))
        later.start()
        later.join()
    finally:
        torch.set_num_threads(threads)
    assert sorted(seen) == [("srpo-sampler-0", 1, 3), ("srpo-sampler-1", 1, 2)]
    assert fresh["threads"] == 2  # threads that start torch later keep the process's count
    assert told[-1] == (8, 8) and [d for d, _ in told] == sorted(d for d, _ in told)
    alone = sample_images(generator, [PROMPT] * 5, list(range(5)), 4, 1.0)
    assert torch.allclose(found["pixels"], alone, atol=1e-5)


def test_sweep_and_sampling_reject_bad_input(reward, generator, pixels):
    with pytest.raises(ValueError, match="candidate words are empty"):
        lab.sensitivity_sweep(reward, pixels, PROMPT, [])
    with pytest.raises(ValueError, match="relative"):
        lab.sensitivity_sweep(reward, pixels, PROMPT, ["photo"], relative=2.0)
    with pytest.raises(ValueError, match="no seeds"):
        lab.sample_lab_images(generator, PROMPT, [], 20, 1.0)
    with pytest.raises(ValueError, match="at most 64"):
        lab.sample_lab_images(generator, PROMPT, list(range(65)), 20, 1.0)
    with pytest.raises(ValueError, match="prompt is empty"):
        lab.sample_lab_images(generator, "", [0], 20, 1.0)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def with_claimed_size(png: bytes, width: int, height: int) -> bytes:
    """The same PNG with its header claiming another size (CRC fixed): a decompression bomb."""
    header = struct.pack(">II", width, height) + png[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    return png[:16] + header + crc + png[33:]


def test_upload_is_decoded_resized_and_cropped_to_the_reward_size(reward, tmp_path, pixels):
    size = lab.reward_input_size(reward)
    assert size == 64
    wide = np.zeros((50, 100, 3), dtype=np.uint8)
    wide[:, 25:75] = (255, 0, 0)
    data = png_bytes(Image.fromarray(wide))
    path = tmp_path / "wide.png"
    path.write_bytes(data)
    for source in (data, path, str(path), io.BytesIO(data)):
        loaded = lab_uploads.load_upload(source, size)
        assert loaded.shape == (3, 64, 64) and loaded.dtype == torch.float32
        assert torch.allclose(loaded[:, :, 20:44], torch.tensor([1.0, 0, 0])[:, None, None])
    photo = Image.fromarray((np.indices((900, 1600)).sum(0) % 256).astype(np.uint8)).convert("RGB")
    jpeg = io.BytesIO()
    photo.save(jpeg, format="JPEG")
    assert lab_uploads.load_upload(jpeg.getvalue(), size).shape == (3, 64, 64)
    clear = Image.new("RGBA", (32, 32), (0, 0, 255, 0))
    assert torch.allclose(lab_uploads.load_upload(png_bytes(clear), 16), torch.ones(3, 16, 16))
    batch = lab_uploads.load_uploads([data, data], size)
    result = lab.preview(reward, batch, PROMPT, ["photo"], ["painting"])
    assert result.srp.shape == (2,) and torch.isfinite(result.srp).all()


def test_uploads_that_are_not_images_or_are_bombs_raise_clear_errors(tmp_path):
    small = png_bytes(Image.new("RGB", (16, 16), "white"))
    with pytest.raises(ValueError, match="not an image"):
        lab_uploads.load_upload(b"%PDF-1.4 definitely not a picture", 64)
    with pytest.raises(ValueError, match="corrupt or truncated"):
        lab_uploads.load_upload(png_bytes(Image.new("RGB", (64, 64), "red"))[:80], 64)
    with pytest.raises(ValueError, match="empty"):
        lab_uploads.load_upload(b"", 64)
    with pytest.raises(ValueError, match="decompression bomb"):
        lab_uploads.load_upload(with_claimed_size(small, 100_000, 100_000), 64)
    with pytest.raises(ValueError, match="decompression bomb"):
        lab_uploads.load_upload(with_claimed_size(small, 8000, 8000), 64)
    with pytest.raises(ValueError, match="decompression bomb"):
        lab_uploads.load_upload(small, 64, max_pixels=100)
    with pytest.raises(ValueError, match="larger than"):
        lab_uploads.load_upload(small, 64, max_bytes=len(small) - 1)
    big = tmp_path / "big.png"
    big.write_bytes(small)
    with pytest.raises(ValueError, match="larger than"):
        lab_uploads.load_upload(big, 64, max_bytes=10)
    with pytest.raises(ValueError, match="at most 64"):
        lab_uploads.load_uploads([small] * 65, 64)


class ScoreOnly(torch.nn.Module):
    """A reward with only ``score`` (as a scorer with a head or a remote judge has): the lab
    must preview SRP on it in the score-difference form."""

    def __init__(self, inner, differentiable: bool = True) -> None:
        super().__init__()
        self.inner, self.name, self.differentiable = inner, "score-only", differentiable

    def score(self, pixels, texts):
        return self.inner.score(pixels, texts)


def test_preview_scores_any_reward_with_the_score_difference_form(reward, pixels):
    args = (pixels, "a red circle", ["photo", "render"], ["painting"], 0.3)
    dual = lab.preview(reward, *args)
    other = lab.preview(ScoreOnly(reward), *args)
    assert (dual.form, other.form) == ("embedding", "difference")
    # the two forms agree for a dual encoder, whose score is linear in the text embedding
    assert torch.allclose(other.pair_srp, dual.pair_srp, atol=1e-4)
    assert torch.allclose(other.plain, dual.plain, atol=1e-4)
    assert torch.allclose(other.saliency, dual.saliency, atol=1e-3, rtol=1e-3)
    remote = lab.preview(ScoreOnly(reward, differentiable=False), *args)
    assert remote.saliency is None and torch.allclose(remote.srp, dual.srp, atol=1e-4)
    sweep = lab.sensitivity_sweep(ScoreOnly(reward), pixels, "a red circle", ["photo", "cat"])
    same = lab.sensitivity_sweep(reward, pixels, "a red circle", ["photo", "cat"])
    assert [w.effect for w in sweep.words] == pytest.approx([w.effect for w in same.words])


def test_sampling_reports_each_denoising_step_for_a_progress_bar(generator):
    from srpo.sampling import sample_images

    heard = []
    images = lab.sample_lab_images(
        generator, PROMPT, [0, 1], 3, 3.0, lambda d, t: heard.append((d, t))
    )
    # 3 steps per image part: one part, or two on the single-threaded sampling workers
    assert images.shape[0] == 2 and len(heard) in (3, 6)
    assert heard == [(n, len(heard)) for n in range(1, len(heard) + 1)]
    heard.clear()  # three images in batches of two: both batches count into one total
    sample_images(
        generator,
        [PROMPT] * 3,
        [0, 1, 2],
        2,
        3.0,
        batch=2,
        on_step=lambda d, t: heard.append((d, t)),
    )
    assert heard == [(1, 4), (2, 4), (3, 4), (4, 4)]
    same = lab.sample_lab_images(generator, PROMPT, [0, 1], 3, 3.0)
    assert torch.equal(same, images)  # listening changes nothing
