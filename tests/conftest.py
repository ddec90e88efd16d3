"""Offline, CPU-only test set-up: every cache in a temporary folder, Hub access off; the shared fixtures.

The environment is set before any test module imports ``datasets`` or ``huggingface_hub``. Helper
functions live in ``tests/helpers/`` (imported as ``helpers``); test modules never import each other.
"""

from __future__ import annotations

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
from helpers.data import image_bytes, write_test_root  # noqa: E402
from helpers.hub import FakeHub  # noqa: E402


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


@pytest.fixture
def fake_hub(monkeypatch) -> FakeHub:
    """The fake Hub, installed as every ``HfApi`` of huggingface_hub and timm (``tests/helpers/hub.py``)."""
    return FakeHub().install(monkeypatch)
