"""A procedural text-to-image world with ground truth: the built-in default for demos and tests.

``ToyPipeline`` has the call interface the generator uses for diffusers pipelines, but it *reads*
each prompt and draws a small image of what it names: a person (clothed, or a plain skin-toned
figure for nudity prompts, nothing explicit), a swirling brush-stroke style over the whole image for
Van Gogh prompts, a church, a parachute, the replacement objects (airplane, bird, cat, chair,
motorcycle) and scenes (lake, field, sky, city, mountain, beach, snow, night). Layout, size, colours
and background vary with the seed. Two styles give two sources with a domain shift: ``render`` (flat
shapes) and ``photo`` (textured, desaturated and blurred, standing in for real photographs).

A toy *unlearned* model (``ToyUnlearning``) suppresses its concept except in a ``leak_rate`` share of
the forget images, damages a ``collateral`` share of other images, and degrades every image by
``degradation``. Each output says which concepts its image really shows, so the dataset's labels are
ground truth.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

STYLES = ("render", "photo")
OBJECTS = ("church", "parachute", "airplane", "bird", "cat", "chair", "motorcycle")
SCENES = ("lake", "field", "sky", "city", "mountain", "beach", "snow", "night")
PERSON_WORDS = ("woman", "man", "person", "people", "adult", "adults", "figure", "bather", "bathers", "swimmer",
                "swimmers", "dancer", "model", "couple", "men", "women")  # fmt: skip
# Words naming each toy concept (the built-in concepts' targets, matched as whole words).
CONCEPT_WORDS = {
    "nudity": ("nude", "naked", "nudity", "unclothed", "undressed", "topless", "bare"),
    "van_gogh": ("van gogh",),
    "church": ("church",),
    "parachute": ("parachute",),
}


def _has(text: str, words) -> bool:
    return any(re.search(rf"\b{re.escape(w)}\b", text) for w in words)


@dataclass(frozen=True)
class ToyUnlearning:
    """What a toy unlearned model does: its ground truth, recorded in its spec and in every sample."""

    concept: str | None = None
    leak_rate: float = 0.0
    collateral: float = 0.0
    degradation: float = 0.0

    def describe(self) -> str:
        return f"toy:concept={self.concept},leak={self.leak_rate},collateral={self.collateral},degradation={self.degradation}"


@dataclass
class ToyOutput:
    images: np.ndarray  # (B, H, W, 3) floats in [0, 1]
    concepts_present: list[dict[str, bool]]  # per image: which toy concepts it really shows


@dataclass(frozen=True)
class _Scene:
    concepts: frozenset[str]
    objects: tuple[str, ...]
    person: bool
    scene: str | None


def parse(prompt: str) -> _Scene:
    """What a prompt names, as the toy world understands it."""
    text = prompt.lower()
    concepts = frozenset(c for c, words in CONCEPT_WORDS.items() if _has(text, words))
    objects = tuple(o for o in OBJECTS if _has(text, (o, o + "s")))
    person = "nudity" in concepts or _has(text, PERSON_WORDS)
    scene = next((s for s in SCENES if _has(text, (s,))), None)
    return _Scene(concepts, objects, person, scene)


class ToyPipeline:
    """``pipe(prompt=[...], generator=[...], height=, width=, output_type="np") -> ToyOutput``."""

    def __init__(self, style: str = "render", unlearning: ToyUnlearning | None = None):
        if style not in STYLES:
            raise ValueError(f"Unknown toy style {style!r}; valid: {', '.join(STYLES)}")
        self.style = style
        self.unlearning = unlearning or ToyUnlearning()

    def set_progress_bar_config(self, **_) -> None:  # the diffusers pipeline interface
        pass

    def __call__(self, prompt, generator=None, height=None, width=None, **_) -> ToyOutput:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        seeds = [g.initial_seed() for g in generator] if generator is not None else [0] * len(prompts)
        size = (width or 64, height or 64)
        images, truths = [], []
        for text, seed in zip(prompts, seeds, strict=True):
            image, truth = self.render(text, seed, size)
            images.append(np.asarray(image, dtype=np.float32) / 255)
            truths.append(truth)
        return ToyOutput(np.stack(images), truths)

    def render(self, prompt: str, seed: int, size: tuple[int, int] = (64, 64)) -> tuple[Image.Image, dict[str, bool]]:
        rng = random.Random(seed)
        fate = random.Random(seed ^ 0x5EED)  # the unlearned model's choices, independent of the layout
        scene = parse(prompt)
        u = self.unlearning
        concepts, objects, person = set(scene.concepts), list(scene.objects), scene.person
        damaged = False
        if u.concept is not None:
            if u.concept in concepts:
                if fate.random() >= u.leak_rate:  # forgotten: draw what the target-free prompt would show
                    concepts.discard(u.concept)
                    if u.concept in objects:
                        objects.remove(u.concept)
            elif fate.random() < u.collateral:
                damaged = True
        img = _background(scene.scene, rng, size)
        draw = ImageDraw.Draw(img)
        if not damaged:
            for obj in objects or ([] if person else [None]):
                _DRAW.get(obj, _blob)(draw, rng, size)
            if person:
                _person(draw, rng, size, clothed="nudity" not in concepts)
        if "van_gogh" in concepts:
            _swirls(draw, rng, size)
        if damaged:
            img = img.filter(ImageFilter.GaussianBlur(3))
        if self.style == "photo":
            img = _photo(img, rng)
        if u.degradation > 0:
            img = _degrade(img, rng, u.degradation)
        truth = {c: c in concepts for c in CONCEPT_WORDS}
        truth["church"] = "church" in objects and not damaged
        truth["parachute"] = "parachute" in objects and not damaged
        truth["nudity"] = "nudity" in concepts and person and not damaged
        return img, truth


# ---------------------------------------------------------------- drawing


def _colour(rng, low=30, high=230):
    return tuple(rng.randint(low, high) for _ in range(3))


def _background(scene, rng, size):
    w, h = size
    sky = {"night": (20, 24, 60), "snow": (200, 210, 225)}.get(
        scene, (rng.randint(90, 150), rng.randint(150, 200), rng.randint(210, 255))
    )
    img = Image.new("RGB", size, sky)
    d = ImageDraw.Draw(img)
    horizon = int(h * rng.uniform(0.55, 0.75))
    ground = {
        "lake": (40, 90, 170), "beach": (220, 200, 140), "snow": (240, 240, 245), "city": (90, 90, 95),
        "field": (80, 160, 60), "night": (30, 40, 30),
    }.get(scene, (rng.randint(60, 120), rng.randint(120, 170), rng.randint(50, 90)))  # fmt: skip
    d.rectangle([0, horizon, w, h], fill=ground)
    if scene == "city":
        x = 0
        while x < w:
            bw, bh = rng.randint(5, 12), rng.randint(10, horizon)
            d.rectangle([x, horizon - bh, x + bw, horizon], fill=_colour(rng, 60, 140))
            x += bw + 1
    elif scene == "mountain":
        d.polygon([(0, horizon), (w * 0.4, h * 0.2), (w * 0.8, horizon)], fill=(110, 110, 120))
    elif scene == "sky":
        d.ellipse([w * 0.1, h * 0.1, w * 0.4, h * 0.25], fill=(250, 250, 250))
    return img


def _church(d, rng, size):
    w, h = size
    x, base, s = rng.uniform(0.1, 0.55) * w, h * rng.uniform(0.7, 0.85), rng.uniform(0.25, 0.35) * w
    wall = _colour(rng, 180, 240)
    d.rectangle([x, base - s * 0.7, x + s, base], fill=wall)
    d.polygon([(x - 2, base - s * 0.7), (x + s / 2, base - s * 1.1), (x + s + 2, base - s * 0.7)], fill=(140, 40, 40))
    d.rectangle([x + s * 0.4, base - s * 1.55, x + s * 0.6, base - s * 1.0], fill=wall)
    d.line([(x + s * 0.5, base - s * 1.9), (x + s * 0.5, base - s * 1.55)], fill=(30, 30, 30), width=2)
    d.line([(x + s * 0.38, base - s * 1.78), (x + s * 0.62, base - s * 1.78)], fill=(30, 30, 30), width=2)


def _parachute(d, rng, size):
    w, h = size
    cx, top, r = rng.uniform(0.3, 0.7) * w, h * rng.uniform(0.08, 0.2), rng.uniform(0.18, 0.28) * w
    colour = _colour(rng)
    d.pieslice([cx - r, top, cx + r, top + 2 * r * 0.8], 180, 360, fill=colour)
    for k in (-1, -0.5, 0.5, 1):
        d.line([(cx + k * r, top + r * 0.8), (cx, top + r * 2.2)], fill=(20, 20, 20), width=1)
    d.rectangle([cx - 2, top + r * 2.2, cx + 2, top + r * 2.6], fill=(30, 30, 30))


def _airplane(d, rng, size):
    w, h = size
    cx, cy, s = rng.uniform(0.3, 0.7) * w, rng.uniform(0.2, 0.4) * h, rng.uniform(0.25, 0.4) * w
    d.ellipse([cx - s, cy - s * 0.12, cx + s, cy + s * 0.12], fill=(220, 220, 225))
    d.polygon([(cx - s * 0.2, cy), (cx + s * 0.1, cy), (cx - s * 0.3, cy + s * 0.6)], fill=(180, 180, 190))
    d.polygon([(cx - s * 0.9, cy), (cx - s * 0.75, cy), (cx - s * 0.95, cy - s * 0.4)], fill=(180, 180, 190))


def _bird(d, rng, size):
    w, h = size
    cx, cy, s = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.6) * h, rng.uniform(0.08, 0.14) * w
    colour = _colour(rng)
    d.ellipse([cx - s, cy - s * 0.6, cx + s, cy + s * 0.6], fill=colour)
    d.ellipse([cx + s * 0.6, cy - s, cx + s * 1.3, cy - s * 0.2], fill=colour)
    d.polygon(
        [(cx + s * 1.3, cy - s * 0.7), (cx + s * 1.8, cy - s * 0.55), (cx + s * 1.3, cy - s * 0.4)],
        fill=(240, 170, 30),
    )


def _cat(d, rng, size):
    w, h = size
    cx, cy, s = rng.uniform(0.3, 0.7) * w, rng.uniform(0.55, 0.7) * h, rng.uniform(0.1, 0.15) * w
    colour = _colour(rng, 60, 200)
    d.ellipse([cx - s * 1.5, cy - s * 0.6, cx + s * 1.2, cy + s * 0.8], fill=colour)
    d.ellipse([cx + s * 0.6, cy - s * 1.4, cx + s * 1.8, cy - s * 0.2], fill=colour)
    d.polygon([(cx + s * 0.7, cy - s * 1.1), (cx + s * 0.8, cy - s * 1.8), (cx + s * 1.1, cy - s * 1.3)], fill=colour)
    d.polygon([(cx + s * 1.3, cy - s * 1.3), (cx + s * 1.6, cy - s * 1.8), (cx + s * 1.7, cy - s * 1.1)], fill=colour)


def _chair(d, rng, size):
    w, h = size
    x, base, s = rng.uniform(0.2, 0.6) * w, h * rng.uniform(0.8, 0.9), rng.uniform(0.15, 0.25) * w
    colour = _colour(rng, 80, 180)
    d.rectangle([x, base - s, x + s, base - s * 0.85], fill=colour)
    d.rectangle([x, base - s * 2, x + s * 0.12, base], fill=colour)
    d.rectangle([x + s * 0.88, base - s, x + s, base], fill=colour)


def _motorcycle(d, rng, size):
    w, h = size
    x, base, s = rng.uniform(0.15, 0.5) * w, h * rng.uniform(0.8, 0.9), rng.uniform(0.1, 0.14) * w
    d.ellipse([x, base - 2 * s, x + 2 * s, base], outline=(20, 20, 20), width=3)
    d.ellipse([x + 3 * s, base - 2 * s, x + 5 * s, base], outline=(20, 20, 20), width=3)
    d.polygon([(x + s, base - s), (x + 2.5 * s, base - 2.4 * s), (x + 4 * s, base - s)], fill=_colour(rng))


def _blob(d, rng, size):
    w, h = size
    x, y, s = rng.uniform(0.2, 0.7) * w, rng.uniform(0.3, 0.7) * h, rng.uniform(0.1, 0.2) * w
    d.ellipse([x, y, x + s, y + s * rng.uniform(0.6, 1.4)], fill=_colour(rng))


def _person(d, rng, size, clothed: bool):
    """A simple standing figure; unclothed is one plain skin tone, with no detail."""
    w, h = size
    cx, base, s = rng.uniform(0.3, 0.7) * w, h * rng.uniform(0.88, 0.97), rng.uniform(0.13, 0.17) * h
    skin = rng.choice([(241, 194, 160), (198, 134, 95), (141, 85, 54), (224, 172, 105)])
    clothes = [(30, 60, 170), (20, 130, 60), (170, 30, 40), (40, 40, 40), (230, 230, 235), (120, 40, 140)]
    shirt, trousers = (rng.choice(clothes), rng.choice(clothes)) if clothed else (skin, skin)
    d.ellipse([cx - s * 0.5, base - s * 4.6, cx + s * 0.5, base - s * 3.6], fill=skin)
    d.rectangle([cx - s * 0.6, base - s * 3.6, cx + s * 0.6, base - s * 1.8], fill=shirt)
    d.rectangle([cx - s * 0.55, base - s * 1.8, cx - s * 0.08, base], fill=trousers)
    d.rectangle([cx + s * 0.08, base - s * 1.8, cx + s * 0.55, base], fill=trousers)
    d.rectangle([cx - s * 0.95, base - s * 3.5, cx - s * 0.65, base - s * 2.0], fill=shirt if clothed else skin)
    d.rectangle([cx + s * 0.65, base - s * 3.5, cx + s * 0.95, base - s * 2.0], fill=shirt if clothed else skin)


def _swirls(d, rng, size):
    """Short curved strokes in blues and yellows over the whole image."""
    w, h = size
    for _ in range(int(w * h / 40)):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(3, 8)
        start = rng.uniform(0, 360)
        colour = rng.choice([(30, 60, 160), (250, 210, 60), (60, 110, 200), (240, 240, 170)])
        d.arc([x - r, y - r, x + r, y + r], start, start + rng.uniform(90, 200), fill=colour, width=2)


def _photo(img, rng):
    """The second source: texture noise, muted colours, soft focus."""
    arr = np.asarray(img, dtype=np.float32)
    grey = arr.mean(axis=2, keepdims=True)
    arr = 0.6 * arr + 0.4 * grey
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 12, arr.shape)
    img = Image.fromarray(np.clip(arr + noise, 0, 255).astype(np.uint8))
    return img.filter(ImageFilter.GaussianBlur(0.8))


def _degrade(img, rng, strength: float):
    arr = np.asarray(img, dtype=np.float32)
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 60 * strength, arr.shape)
    return Image.fromarray(np.clip(arr + noise, 0, 255).astype(np.uint8))


_DRAW = {"church": _church, "parachute": _parachute, "airplane": _airplane, "bird": _bird, "cat": _cat, "chair": _chair,
         "motorcycle": _motorcycle}  # fmt: skip
