"""Stand-in "generator" for the data-layer quickstart: one small drawing per prompt.

Until the toy text-to-image model lands, ``make demo`` needs a folder of labelled images made from
prompts. This draws, for each prompt of a JSONL file, a 64 px scene: a church-like building for
``forget`` prompts of ``church`` and a plain shape for every other prompt, into
``OUT/<split>/<class>/<prompt_id>.png`` (every fifth prompt goes to ``test``).

    python examples/draw_prompt_images.py prompts.jsonl OUT
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw

from dataigm import load_registry, read_prompts


def draw(target: bool, seed: int, size: int = 64) -> Image.Image:
    rng = random.Random(seed)
    sky = (rng.randint(90, 160), rng.randint(140, 200), rng.randint(200, 255))
    img = Image.new("RGB", (size, size), sky)
    d = ImageDraw.Draw(img)
    d.rectangle([0, size * 3 // 4, size, size], fill=(60, rng.randint(120, 170), 60))
    x = rng.randint(8, size - 40)
    if target:  # walls, roof, spire and cross
        d.rectangle([x, 30, x + 28, 50], fill=(230, 225, 210))
        d.polygon([(x - 2, 30), (x + 14, 18), (x + 30, 30)], fill=(140, 40, 40))
        d.rectangle([x + 11, 8, x + 17, 20], fill=(230, 225, 210))
        d.line([(x + 14, 1), (x + 14, 8)], fill=(40, 40, 40))
        d.line([(x + 11, 3), (x + 17, 3)], fill=(40, 40, 40))
    else:
        color = (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))
        d.ellipse([x, 20, x + rng.randint(14, 30), 20 + rng.randint(10, 24)], fill=color)
    return img


def main(argv: list[str] | None = None) -> int:
    prompts_file, out = (argv or sys.argv[1:])[:2]
    registry = load_registry()
    for i, record in enumerate(read_prompts(prompts_file)):
        concept = registry.get(record.concept)
        target = record.kind == "forget"
        split = "test" if i % 5 == 4 else "train"
        folder = Path(out) / split / (concept.target_class if target else concept.pair_class)
        folder.mkdir(parents=True, exist_ok=True)
        draw(target, seed=i).save(folder / f"{record.prompt_id}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
