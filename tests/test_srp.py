import pytest
import torch
import torch.nn.functional as F

from srpo.rewards import srp


def unit(*shape):
    return F.normalize(torch.randn(*shape), dim=-1)


def test_augment_prefixes_the_word_and_rejects_empty_words():
    assert srp.augment("Realistic photo", ["a cat", "a dog"]) == [
        "Realistic photo. a cat",
        "Realistic photo. a dog",
    ]
    assert srp.augment("Detailed.", ["x"]) == ["Detailed. x"]
    with pytest.raises(ValueError, match="empty"):
        srp.augment("  ", ["x"])


def test_swapping_words_flips_the_sign_of_the_relative_part():
    image, pos, neg = unit(6, 16), unit(6, 16), unit(6, 16)
    relative = srp.srp_reward(image, pos, neg, k=0.0)
    assert torch.allclose(srp.srp_reward(image, neg, pos, k=0.0), -relative)
    k = 0.3
    absolute_pos = k * (image * pos).sum(-1)
    absolute_neg = k * (image * neg).sum(-1)
    swapped = srp.inversion_reward(image, pos, neg, k)
    assert torch.allclose(
        swapped - absolute_neg, -(srp.srp_reward(image, pos, neg, k) - absolute_pos)
    )


def test_with_k_zero_an_image_bias_shared_by_both_prompts_cancels():
    image, pos, neg = unit(5, 12), unit(5, 12), unit(5, 12)
    direction = F.normalize(torch.randn(12), dim=0)
    # make the shared direction carry the same weight in both text embeddings
    pos = pos - (pos @ direction)[:, None] * direction + 0.4 * direction
    neg = neg - (neg @ direction)[:, None] * direction + 0.4 * direction
    biased = image + 2.5 * direction
    assert torch.allclose(
        srp.srp_reward(biased, pos, neg, 0.0), srp.srp_reward(image, pos, neg, 0.0), atol=1e-6
    )
    assert not torch.allclose(
        srp.srp_reward(biased, pos, neg, 0.5), srp.srp_reward(image, pos, neg, 0.5)
    )


def test_per_sample_k_and_scale():
    image, pos, neg = unit(3, 8), unit(3, 8), unit(3, 8)
    k = torch.tensor([0.0, 0.1, 0.2])
    expected = 2.0 * torch.stack(
        [(image[i] * ((1 + k[i]) * pos[i] - neg[i])).sum() for i in range(3)]
    )
    assert torch.allclose(srp.srp_reward(image, pos, neg, k, scale=2.0), expected)


def test_loss_forms():
    reward = torch.tensor([0.2, -0.1, 0.5])
    assert srp.reward_loss(reward, "negative").item() == pytest.approx(-0.2)
    assert srp.reward_loss(reward, "hinge", threshold=0.3).item() == pytest.approx((0.1 + 0.4) / 3)
    with pytest.raises(ValueError, match="loss kind"):
        srp.reward_loss(reward, "squared")


def test_control_words_cycle_sample_and_validate():
    words = srp.ControlWords.of(["photo", "detailed"], ["painting", "cg", "flat"])
    assert [words.pick(i) for i in range(3)] == [
        ("photo", "painting"),
        ("detailed", "cg"),
        ("photo", "flat"),
    ]
    sampled = srp.ControlWords.of(["a", "b"], ["c", "d"], mode="sample")
    picks = [sampled.pick(i, seed=7) for i in range(40)]
    assert picks == [sampled.pick(i, seed=7) for i in range(40)]
    assert len(set(picks)) == 4
    with pytest.raises(ValueError, match="negative control words"):
        srp.ControlWords.of(["photo"], [])
    with pytest.raises(ValueError, match="positive control words"):
        srp.ControlWords.of([" "], ["cg"])
    with pytest.raises(ValueError, match="mode"):
        srp.ControlWords.of("a", "b", mode="random")


class LinearHead(torch.nn.Module):
    """A reward with only ``score``: a fixed linear function of a pixel statistic."""

    name = "linear-head"

    def score(self, pixels, texts):
        return torch.stack([pixels[i].mean() * (1 + len(t)) for i, t in enumerate(texts)])


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory):
    from srpo.rewards.clip import CLIPReward
    from tests.factories import save_small_clip_folder

    return CLIPReward.from_pretrained(save_small_clip_folder(tmp_path_factory.mktemp("clip")))


@pytest.mark.parametrize("swapped", [False, True])
def test_embedding_and_difference_forms_agree_for_a_linear_reward(small_clip, swapped):
    # A dual encoder's score is linear in the text embedding, so the score-difference form
    # (1+k) r(pos. p) - r(neg. p) equals the embedding form <f(x), (1+k) t_pos - t_neg>,
    # value and gradient.
    prompts = ["a red circle", "a blue square", "a cat"]
    k = torch.tensor([0.0, 0.1, 0.25])
    results = {}
    for form in ("embedding", "difference"):
        pixels = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(5))
        pixels.requires_grad_(True)
        scorer = srp.SRPScorer(small_clip, form=form)
        value = scorer.score(pixels, prompts, "photo", "painting", k, swapped=swapped)
        value.sum().backward()
        results[form] = value.detach(), pixels.grad
    assert srp.SRPScorer(small_clip).form == "embedding"
    assert torch.allclose(results["embedding"][0], results["difference"][0], atol=1e-5)
    assert torch.allclose(results["embedding"][1], results["difference"][1], atol=1e-6)
    # and the difference form is exactly (1+k) r(pos. p) - r(neg. p) of the reward's score
    pixels = torch.rand(3, 3, 40, 40)
    first, second = ("painting", "photo") if swapped else ("photo", "painting")
    expected = (1 + k) * small_clip.score(pixels, srp.augment(first, prompts)) - small_clip.score(
        pixels, srp.augment(second, prompts)
    )
    got = srp.SRPScorer(small_clip, "difference").score(
        pixels, prompts, "photo", "painting", k, swapped
    )
    assert torch.allclose(got, expected, atol=1e-5)


def test_a_reward_without_embeddings_uses_the_difference_form():
    from srpo.rewards.base import srp_form

    head = LinearHead()
    assert srp_form(head) == "difference"
    scorer = srp.SRPScorer(head)
    pixels = torch.rand(2, 3, 8, 8)
    k = 0.2
    value = scorer.score(pixels, ["a", "bb"], "x", "yy", k)
    r_pos = head.score(pixels, srp.augment("x", ["a", "bb"]))
    r_neg = head.score(pixels, srp.augment("yy", ["a", "bb"]))
    assert torch.allclose(value, (1 + k) * r_pos - r_neg)
    swapped = scorer.score(pixels, ["a", "bb"], "x", "yy", k, swapped=True)
    assert torch.allclose(swapped, (1 + k) * r_neg - r_pos)
    with pytest.raises(ValueError, match="no embedding form"):
        srp.SRPScorer(head, form="embedding")
    head.srp_form = "sideways"
    with pytest.raises(ValueError, match="unknown SRP form"):
        srp_form(head)
