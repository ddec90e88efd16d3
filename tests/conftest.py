"""Offline, CPU-only test set-up: every cache in a temporary folder, Hub access off.

The environment is set before any test module imports ``datasets`` or ``huggingface_hub``.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

_CACHE = Path(tempfile.mkdtemp(prefix="dataigm-test-cache-"))
os.environ.update(
    {
        "HF_HOME": str(_CACHE / "hf"),
        "HF_DATASETS_CACHE": str(_CACHE / "datasets"),
        "HF_HUB_CACHE": str(_CACHE / "hub"),
        "TORCH_HOME": str(_CACHE / "torch"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "TQDM_DISABLE": "1",
    }
)
os.environ.pop("DATAIGM_CONCEPTS_DIR", None)

import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from dataigm import Sample, ShardId, load_registry, make_key, write_shard  # noqa: E402
from dataigm.manifest import open_root, register_concepts  # noqa: E402


def image_bytes(color=(200, 30, 30), size=(16, 12), fmt="PNG") -> bytes:
    """A small solid image encoded as ``fmt``."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def make_sample(concept: str, split: str, source: str, index: int, label: str = "target", **record) -> Sample:
    """A valid sample whose pixels depend on ``index`` (so decoded images can be told apart)."""
    registry = load_registry()
    color = (index * 37 % 256, index * 91 % 256, 128 if label == "target" else 0)
    data = image_bytes(color)
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
    return Sample(make_key(source, f"{index:05d}"), data, "png", 1 if label == "target" else 0, base)


def write_test_root(root: Path, layout: dict[tuple[str, str, str], list[int]]) -> Path:
    """Write a dataset root: ``{(concept, split, source): [samples in shard 0, shard 1, ...]}``.

    Labels alternate target/pair; every sample index is unique across the root.
    """
    registry = load_registry()
    open_root(root)
    register_concepts(root, [registry.get(c) for c in sorted({k[0] for k in layout})])
    index = 0
    for (concept, split, source), shard_sizes in layout.items():
        for shard_index, size in enumerate(shard_sizes):
            samples = []
            for _ in range(size):
                samples.append(make_sample(concept, split, source, index, label=("target", "pair")[index % 2]))
                index += 1
            write_shard(root, ShardId(concept, split, source, shard_index), samples, job_id="test")
    from dataigm.dataset_readme import write_dataset_readme

    write_dataset_readme(root)
    return root


@pytest.fixture
def small_root(tmp_path) -> Path:
    """Two concepts, train/test, two sources; 26 samples in 6 shards."""
    return write_test_root(
        tmp_path / "root",
        {
            ("church", "train", "real"): [4, 3],
            ("church", "test", "real"): [3],
            ("church", "train", "laion"): [4],
            ("nudity", "train", "real"): [6],
            ("nudity", "test", "generated"): [6],
        },
    )


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """Class sub-folders for ``church``: 3 church images (one JPEG), 2 other, one corrupt file, one text file."""
    folder = tmp_path / "images"
    (folder / "church").mkdir(parents=True)
    (folder / "other").mkdir()
    for i in range(2):
        (folder / "church" / f"c{i}.png").write_bytes(image_bytes((10 * i, 200, 10)))
    (folder / "church" / "c2.jpg").write_bytes(image_bytes((0, 0, 250), fmt="JPEG"))
    for i in range(2):
        (folder / "other" / f"o{i}.png").write_bytes(image_bytes((200, 10 * i, 10)))
    (folder / "other" / "broken.png").write_bytes(image_bytes()[:40])
    (folder / "other" / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory) -> Path:
    """A saved tiny ``StableDiffusionPipeline`` folder (real diffusers classes, random weights)."""
    from generation.tiny import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("pipelines") / "tiny")


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """A saved tiny ``CLIPModel`` + processor folder (byte-level tokenizer written offline, 32 px images)."""
    from generation.tiny import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")
