"""The dataset root is a Hub dataset repository: load_dataset and timm read it with no code of ours."""

import numpy as np
import pytest
from huggingface_hub import DatasetCard

from dataigm import FIELD_NAMES, iter_samples, load_registry
from dataigm.schema import LABELS, SOURCES
from dataigm.taxonomy import LEAVES


@pytest.fixture
def datasets_lib():
    import datasets

    datasets.disable_progress_bars()
    return datasets


def _decoded(sample) -> np.ndarray:
    return np.asarray(sample.decode())


def test_readme_yaml_agrees_with_registry(small_root):
    card = DatasetCard.load(small_root / "README.md")
    data = card.data.to_dict()
    names = {c["config_name"] for c in data["configs"]}
    assert names == {"default", "church", "nudity"}
    church = next(c for c in data["configs"] if c["config_name"] == "church")
    assert church["data_files"] == [
        {"split": "test", "path": "data/church/test/*.tar"},
        {"split": "train", "path": "data/church/train/*.tar"},
    ]
    infos = {i["config_name"]: i for i in data["dataset_info"]}
    registry = load_registry()
    for cid in ("church", "nudity"):
        cls = next(f for f in infos[cid]["features"] if f["name"] == "cls")
        assert list(cls["dtype"]["class_label"]["names"].values()) == list(registry.get(cid).class_names)
    record = next(f for f in infos["default"]["features"] if f["name"] == "json")["struct"]
    assert [f["name"] for f in record] == list(FIELD_NAMES)


def test_load_dataset_default_config_has_class_names(small_root, datasets_lib):
    ds = datasets_lib.load_dataset(str(small_root))
    assert set(ds) == {"train", "test"}
    assert ds["train"].num_rows + ds["test"].num_rows == 26
    features = ds["train"].features
    assert features["cls"].names == list(LABELS)
    assert features["json"]["concept"].names == ["church", "nudity"]
    assert features["json"]["source"].names == list(SOURCES)
    assert features["json"]["category"].names == list(LEAVES)


def test_concept_config_matches_our_reader(small_root, datasets_lib):
    ds = datasets_lib.load_dataset(str(small_root), "church", split="train")
    ours = {s.key: s for s in iter_samples(small_root, concept="church", split="train")}
    assert ds.features["cls"].names == ["other", "church"]
    assert sorted(ds["__key__"]) == sorted(ours)
    for row in ds:
        sample = ours[row["__key__"]]
        assert row["cls"] == sample.cls
        assert ds.features["json"]["label"].int2str(row["json"]["label"]) == sample.record["label"]
        assert np.array_equal(np.asarray(row["png"].convert("RGB")), _decoded(sample))


def test_streaming_gives_the_same_samples(small_root, datasets_lib):
    mapped = datasets_lib.load_dataset(str(small_root), "nudity", split="train")
    streamed = datasets_lib.load_dataset(str(small_root), "nudity", split="train", streaming=True)
    rows = list(streamed)
    assert [r["__key__"] for r in rows] == mapped["__key__"]
    for row, ref in zip(rows, mapped, strict=False):
        assert row["cls"] == ref["cls"] and row["json"] == ref["json"]
        assert np.array_equal(np.asarray(row["png"]), np.asarray(ref["png"]))


def test_timm_hfds_reads_the_root(small_root):
    import timm.data

    ds = timm.data.create_dataset(f"hfds/{small_root}", split="train", input_key="png", target_key="cls")
    assert len(ds) == 17
    image, target = ds[0]
    assert image.size == (16, 12) and target in (0, 1)


def test_readme_follows_new_data(small_root, datasets_lib):
    from helpers.data import write_test_root

    write_test_root(small_root, {("van_gogh", "validation", "laion"): [2]})
    ds = datasets_lib.load_dataset(str(small_root), "van_gogh")
    assert list(ds) == ["validation"] and ds["validation"].features["cls"].names == ["non_vangogh", "vangogh"]
    # concept ids keep their class ids when a concept is added (append-only)
    assert ds["validation"].features["json"]["concept"].names == ["church", "nudity", "van_gogh"]
