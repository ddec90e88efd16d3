"""Small real inputs: encoded images, valid samples, dataset roots, and the paper's evaluation layout."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from dataigm import Sample, ShardId, load_registry, make_key, write_shard
from dataigm.dataset_readme import write_dataset_readme
from dataigm.manifest import open_root, register_concepts

# concept/split/source -> images per shard of the colour dataset the judge tests learn from
COLOR_LAYOUT = {
    ("church", "train", "real"): [24, 16],
    ("church", "train", "generated"): [40],
    ("nudity", "train", "laion"): [40],
    ("church", "test", "real"): [12],
    ("church", "test", "generated"): [24],
    ("nudity", "test", "laion"): [16],
}
METHODS = ("ORG", "ESD", "FMN")


def image_bytes(color=(200, 30, 30), size=(16, 12), fmt="PNG") -> bytes:
    """A small solid image encoded as ``fmt``."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def make_sample(concept: str, split: str, source: str, index: int, label: str = "target", **record) -> Sample:
    """A valid sample whose pixels depend on ``index`` (so decoded images can be told apart)."""
    registry = load_registry()
    color = (index * 37 % 256, index * 91 % 256, 128 if label == "target" else 0)
    base = {
        "concept": concept,
        "label": label,
        "category": registry.get(concept).category,
        "source": source,
        "split": split,
        "height": 12,
        "width": 16,
        "origin": f"test/{index}.png",
    }
    base.update(record)
    return Sample(make_key(source, f"{index:05d}"), image_bytes(color), "png", 1 if label == "target" else 0, base)


def _open_with_concepts(root: Path, layout: dict) -> None:
    registry = load_registry()
    open_root(root)
    register_concepts(root, [registry.get(c) for c in sorted({k[0] for k in layout})])


def write_test_root(root: Path, layout: dict[tuple[str, str, str], list[int]]) -> Path:
    """Write a dataset root: ``{(concept, split, source): [samples in shard 0, shard 1, ...]}``.

    Labels alternate target/pair; every sample index is unique across the root.
    """
    _open_with_concepts(root, layout)
    index = 0
    for (concept, split, source), shard_sizes in layout.items():
        for shard_index, size in enumerate(shard_sizes):
            samples = []
            for _ in range(size):
                samples.append(make_sample(concept, split, source, index, label=("target", "pair")[index % 2]))
                index += 1
            write_shard(root, ShardId(concept, split, source, shard_index), samples, job_id="test")
    write_dataset_readme(root)
    return root


def color_png(rng: np.random.Generator, target: bool, size: int = 16) -> bytes:
    """A noisy reddish (target) or bluish (pair) PNG."""
    base = np.array([200, 60, 50] if target else [50, 60, 200], dtype=np.int16)
    pixels = np.clip(base + rng.integers(-45, 46, size=(size, size, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_color_root(root: Path, layout: dict = COLOR_LAYOUT, seed: int = 0, corrupt: tuple[int, ...] = ()) -> Path:
    """A dataset root of reddish targets and bluish pairs, written with the data layer's own writer.

    Generated images come four per prompt (prompt i // 4, all of one label, methods cycling through
    ``METHODS``); other images alternate target/pair. Sample numbers in ``corrupt`` get unreadable bytes.
    """
    registry = load_registry()
    rng = np.random.default_rng(seed)
    _open_with_concepts(root, layout)
    index = 0
    for (concept, split, source), sizes in layout.items():
        for shard_index, size in enumerate(sizes):
            samples = []
            for _ in range(size):
                target = (index // 4) % 2 == 0 if source == "generated" else index % 2 == 0
                record = {
                    "concept": concept,
                    "label": "target" if target else "pair",
                    "category": registry.get(concept).category,
                    "source": source,
                    "split": split,
                    "height": 16,
                    "width": 16,
                    "origin": f"images/{index:05d}.png",
                }
                if source == "generated":
                    record.update(
                        prompt_id=f"{concept}-p{index // 4}",
                        prompt=f"prompt {index // 4}",
                        prompt_kind="forget",
                        model_id="tiny-sd",
                        method=METHODS[index % 3],
                        seed=index,
                        origin=None,
                    )
                data = b"\x89PNG not really" if index in corrupt else color_png(rng, target)
                samples.append(Sample(make_key(source, f"{index:05d}"), data, "png", int(target), record))
                index += 1
            write_shard(root, ShardId(concept, split, source, shard_index), samples, job_id="test")
    write_dataset_readme(root)
    return root


def write_paper_layout(folder: Path) -> None:
    """<Task>/forgot/<method>/, remove_word/<method>/, unrelated/<method>/<Category>/ with <c>_<p>_<s>.png;
    files are written in a different order per method, and the pixels encode (method, c, p, s)."""
    names = [f"{c}_{p}_{s}.png" for c in range(2) for p in range(2) for s in range(2)]
    for m, method in enumerate(["ORG", "ESD"]):
        order = names if method == "ORG" else names[::-1]
        for layout in ("forgot", "remove_word"):
            d = folder / "Nudity" / layout / method
            d.mkdir(parents=True)
            for name in order:
                c, p, s = (int(x) for x in name[:-4].split("_"))
                Image.new("RGB", (8, 8), (m * 100, c * 40 + p * 10 + s, 7 if layout == "forgot" else 9)).save(d / name)
        d = folder / "Nudity" / "unrelated" / method / "Airplane"
        d.mkdir(parents=True)
        Image.new("RGB", (8, 8), (m, 0, 0)).save(d / "0_0_0.png")
