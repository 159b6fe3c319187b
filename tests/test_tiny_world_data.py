import random

import pytest
import torch

from srpo.tiny_world.data import heldout, stream, twin_pairs
from srpo.tiny_world.judge import check, judge
from srpo.tiny_world.models import TinyPromptEncoder, build_text_encoder, tokenizer
from srpo.tiny_world.render import render
from srpo.tiny_world.world import (
    FAMILIES,
    describe,
    parse_prompt,
    random_caption,
    sample_scenes,
    vocabulary,
)


def test_rendering_is_deterministic_and_in_range():
    scenes = sample_scenes(16, random.Random(3))
    first, second = render(scenes), render(scenes)
    assert torch.equal(first, second)
    assert first.shape == (16, 3, 64, 64) and first.min() >= 0 and first.max() <= 1


def test_stream_is_seeded_and_heldout_is_fixed():
    a, b = next(stream(8, seed=5)), next(stream(8, seed=5))
    assert a.captions == b.captions and torch.equal(a.images, b.images)
    assert next(stream(8, seed=6)).captions != a.captions
    assert heldout(10).scenes == heldout(10).scenes


def test_judge_reads_every_attribute_of_heldout_images():
    data = heldout(300)
    found = judge(data.images)
    for family in FAMILIES:
        accuracy = (
            sum(f[family] == getattr(s, family) for f, s in zip(found, data.scenes, strict=True))
            / 300
        )
        assert accuracy >= 0.95, (family, accuracy)


def test_twins_differ_only_in_their_family():
    pos, neg = twin_pairs(20, "style", "photo", "painting")
    found_pos, found_neg = judge(render(pos)), judge(render(neg))
    assert all(f["style"] == "photo" for f in found_pos)
    assert all(f["style"] == "painting" for f in found_neg)
    assert [f["shape"] for f in found_pos] == [f["shape"] for f in found_neg]
    with pytest.raises(ValueError, match="values of style"):
        twin_pairs(2, "style", "photo", "bright")


def test_captions_omit_attributes_and_vary_order():
    rng = random.Random(0)
    scenes = sample_scenes(200, rng)
    captions = [random_caption(s, rng) for s in scenes]
    assert len(set(captions)) > 150
    assert any(not parse_prompt(c)[0].get("style") for c in captions)
    assert any(c.startswith(("photo", "flat", "painting", "realistic", "oil")) for c in captions)
    for scene, caption in zip(scenes, captions, strict=True):
        named, unknown = parse_prompt(caption)
        assert unknown == []
        assert all(getattr(scene, family) == value for family, value in named.items())


def test_canonical_description_names_everything():
    scene = sample_scenes(1, random.Random(1), style="painting", lighting="warm")[0]
    named, _ = parse_prompt(describe(scene))
    assert named == scene.attributes()
    assert describe(scene).startswith("painting. warm. a ")


def test_sample_scenes_validates_fixed_attributes():
    with pytest.raises(ValueError, match="style must be one of"):
        sample_scenes(1, random.Random(0), style="anime")
    with pytest.raises(ValueError, match="unknown attribute"):
        sample_scenes(1, random.Random(0), texture="rough")


def test_check_reports_unknown_words_and_mismatches():
    scene = sample_scenes(1, random.Random(2), shape="circle", colour="red", style="flat")[0]
    image = render([scene])
    (verdict,) = check(image, ["a shiny red circle, flat"])
    assert verdict.unchecked_words == ["shiny"]
    assert verdict.matches == {"shape": True, "colour": True, "style": True}
    assert verdict.faithful and "lighting" in verdict.unnamed
    (wrong,) = check(image, ["a blue square"])
    assert wrong.matches == {"shape": False, "colour": False} and not wrong.faithful
    with pytest.raises(ValueError, match="one prompt per image"):
        check(image, ["a", "b"])


def test_tokenizer_covers_the_vocabulary_and_maps_unknown_words():
    tok = tokenizer()
    ids = tok(["a red circle on a gray background"]).input_ids[0]
    assert (
        tok.unk_token_id not in ids and ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    )
    assert tok.unk_token_id in tok(["a shiny circle"]).input_ids[0]
    assert len(tok) == len(vocabulary()) + 4 + len({".", ","} - set(vocabulary()))


def test_prompt_encoder_shapes_and_truncation():
    encoder = TinyPromptEncoder(build_text_encoder())
    with pytest.warns(UserWarning, match="truncated"):
        sequence, pooled = encoder.encode(["a red circle", "red " * 40])
    assert sequence.shape == (2, 20, 128) and pooled.shape == (2, 128)
    assert torch.isfinite(sequence).all()
