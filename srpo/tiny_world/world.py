"""The tiny world's attributes, scenes and captions.

A scene is one shape on a background, with six attributes. ``style`` and ``lighting`` play
the paper's control words ("Realistic photo" vs "Painting", "bright" vs "dark"). Captions
name a random subset of the attributes in varying order, so a caption without a style
word leaves the style open.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = {
    "red": (0.86, 0.16, 0.14),
    "green": (0.18, 0.72, 0.22),
    "blue": (0.16, 0.32, 0.88),
    "yellow": (0.94, 0.84, 0.12),
}
BACKGROUNDS = {"white": (0.93, 0.93, 0.91), "gray": (0.5, 0.5, 0.5), "black": (0.07, 0.07, 0.08)}
SIZES = ("small", "large")
STYLES = ("photo", "flat", "painting")
LIGHTINGS = ("bright", "dark", "warm")

FAMILIES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": tuple(COLOURS),
    "background": tuple(BACKGROUNDS),
    "size": SIZES,
    "style": STYLES,
    "lighting": LIGHTINGS,
}

# Words a caption may use for a style or lighting value (the first is the canonical one).
STYLE_WORDS = {
    "photo": ("photo", "realistic photo", "photograph"),
    "flat": ("flat", "flat render", "cg render"),
    "painting": ("painting", "oil painting", "painted"),
}
LIGHTING_WORDS = {
    "bright": ("bright", "bright light"),
    "dark": ("dark", "dim light"),
    "warm": ("warm", "warm light"),
}
FILLER_WORDS = ("a", "an", "of", "on", "background", "shape", "in", "light", "with", "image")


@dataclass(frozen=True)
class Scene:
    """One image's attributes plus the layout that no caption names."""

    shape: str
    colour: str
    background: str
    size: str
    style: str
    lighting: str
    dx: float = 0.0
    dy: float = 0.0

    def attributes(self) -> dict[str, str]:
        """The six named attributes."""
        values = asdict(self)
        return {family: values[family] for family in FAMILIES}


def sample_scenes(n: int, rng: random.Random, **fixed: str) -> list[Scene]:
    """``n`` uniformly random scenes; ``fixed`` pins attributes (e.g. ``style="photo"``)."""
    unknown = set(fixed) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown attribute(s) {sorted(unknown)}; known: {list(FAMILIES)}")
    for family, value in fixed.items():
        if value not in FAMILIES[family]:
            raise ValueError(f"{family} must be one of {FAMILIES[family]}, got {value!r}")
    scenes = []
    for _ in range(n):
        values = {f: fixed.get(f) or rng.choice(options) for f, options in FAMILIES.items()}
        scenes.append(Scene(**values, dx=rng.uniform(-0.05, 0.05), dy=rng.uniform(-0.05, 0.05)))
    return scenes


def vocabulary() -> list[str]:
    """Every word a caption can contain."""
    words = set(FILLER_WORDS)
    for options in FAMILIES.values():
        words.update(options)
    for phrases in (*STYLE_WORDS.values(), *LIGHTING_WORDS.values()):
        for phrase in phrases:
            words.update(phrase.split())
    return sorted(words)


def describe(
    scene: Scene,
    include: Sequence[str] | None = None,
    rng: random.Random | None = None,
) -> str:
    """A caption naming the attributes in ``include`` (all by default).

    With ``rng`` the word order, phrasing and synonyms vary; without, the caption is the
    canonical ``"<style>. <lighting>. a <size> <colour> <shape> on a <bg> background"``.
    """
    include = set(FAMILIES if include is None else include)
    noun = " ".join(
        [scene.size] * ("size" in include)
        + [scene.colour] * ("colour" in include)
        + [scene.shape if "shape" in include else "shape"]
    )
    noun = f"a {noun}"
    parts = [noun]
    if "background" in include:
        parts.append(f"on a {scene.background} background")
    body = " ".join(parts)
    style = lighting = None
    if "style" in include:
        style = STYLE_WORDS[scene.style][rng.randrange(3) if rng else 0]
    if "lighting" in include:
        lighting = LIGHTING_WORDS[scene.lighting][rng.randrange(2) if rng else 0]
    if rng is None:
        return ". ".join([w for w in (style, lighting) if w] + [body])
    prefixes, suffixes = [], []
    for word in (style, lighting):
        if word is None:
            continue
        (prefixes if rng.random() < 0.5 else suffixes).append(word)
    rng.shuffle(prefixes)
    rng.shuffle(suffixes)
    text = ". ".join([*prefixes, body])
    if suffixes:
        text = ", ".join([text, *suffixes])
    return text


def random_caption(scene: Scene, rng: random.Random, keep: float = 0.65) -> str:
    """A training caption: each attribute named with probability ``keep`` (shape more often)."""
    include = [f for f in FAMILIES if rng.random() < (0.85 if f == "shape" else keep)]
    return describe(scene, include, rng)


def parse_prompt(prompt: str) -> tuple[dict[str, str], list[str]]:
    """The attribute values a prompt names, and the words the world does not know.

    Multi-word style/lighting phrases count as their value; conflicting words in one family
    keep the first.
    """
    text = prompt.lower().replace(",", " ").replace(".", " ")
    words = text.split()
    found: dict[str, str] = {}
    for family, options in FAMILIES.items():
        for word in words:
            if word in options and family not in found:
                found[family] = word
    for family, table in (("style", STYLE_WORDS), ("lighting", LIGHTING_WORDS)):
        if family in found:
            continue
        for value, phrases in table.items():
            if any(f" {p} " in f" {' '.join(words)} " for p in phrases):
                found[family] = value
                break
    known = set(vocabulary())
    unknown = [w for w in dict.fromkeys(words) if w not in known]
    return found, unknown


def scenes_tensor(scenes: Sequence[Scene]) -> dict[str, torch.Tensor]:
    """Scenes as index tensors per attribute (plus float offsets), for the renderer."""
    table = {
        f: torch.tensor([options.index(getattr(s, f)) for s in scenes])
        for f, options in FAMILIES.items()
    }
    table["dx"] = torch.tensor([s.dx for s in scenes])
    table["dy"] = torch.tensor([s.dy for s in scenes])
    return table
