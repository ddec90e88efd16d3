"""Judge data: the shard index, the validation carve-out, targets and masks, the image dataset.

``write_color_root`` (tests/helpers/data.py, used by every ``test_judge_*`` file) writes an easy synthetic
dataset with the data layer's own writer: target images are reddish, pair images bluish, with pixel noise.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.data import METHODS, write_color_root

from dataigm import iter_samples
from detectors.data import (
    ShardImageDataset,
    build_index,
    carve_validation,
    collate_skip_none,
    split_group,
    targets_and_mask,
)


@pytest.fixture
def color_root(tmp_path) -> Path:
    return write_color_root(tmp_path / "colors")


def test_index_points_at_the_image_bytes(color_root):
    entries = build_index(color_root)
    samples = list(iter_samples(color_root))
    assert len(entries) == len(samples) == 172
    for entry, sample in zip(entries, samples, strict=True):
        assert entry.key == sample.key and entry.cls == sample.cls and entry.concept == sample.record["concept"]
        assert entry.read_bytes() == sample.image
    test_church = build_index(color_root, split="test", concepts=["church"])
    assert {(e.split, e.concept) for e in test_church} == {("test", "church")} and len(test_church) == 36
    assert {e.method for e in test_church if e.source == "generated"} == set(METHODS)
    with pytest.raises(ValueError, match="Concept 'ocean' is not in the dataset .*; its concepts: church, nudity"):
        build_index(color_root, concepts=["ocean"])


def test_validation_is_carved_by_prompt_and_by_file(color_root):
    entries = build_index(color_root, split="train")
    train, val = carve_validation(entries, 0.25)
    assert len(train) + len(val) == len(entries) and 0 < len(val) < len(entries)
    side = {}
    for part, name in ((train, "train"), (val, "val")):
        for entry in part:
            side.setdefault(entry.group, set()).add(name)
    assert all(len(sides) == 1 for sides in side.values())  # a prompt never straddles the split
    generated = [e for e in entries if e.source == "generated"]
    assert len({e.group for e in generated}) == len(generated) // 4  # four images per prompt
    assert {e.group.split(":")[0] for e in entries if e.source != "generated"} == {"file"}
    # deterministic and independent of order and of other data
    train2, val2 = carve_validation(list(reversed(entries)) + build_index(color_root, split="test"), 0.25)
    assert {e.uid for e in val} <= {e.uid for e in val2} and not {e.uid for e in val} & {e.uid for e in train2}
    with pytest.raises(ValueError, match="val_fraction=1.5 must be strictly between 0 and 1"):
        carve_validation(entries, 1.5)


def test_split_group_rules():
    assert split_group({"source": "generated", "prompt_id": "p1", "prompt": "x", "origin": None}, "k") == "prompt:p1"
    assert (
        split_group({"source": "generated", "prompt_id": None, "prompt": "a dog", "origin": None}, "k")
        == "prompt:a dog"
    )
    assert split_group({"source": "real", "origin": "a/b.png"}, "k") == "file:a/b.png"
    assert split_group({"source": "laion", "origin": None}, "k9") == "key:k9"


def test_targets_and_mask_mark_only_the_labelled_concept(color_root):
    entries = build_index(color_root, split="test")
    targets, mask = targets_and_mask(entries, ["church", "nudity"])
    assert mask.sum(1).eq(1).all()
    for row, entry in enumerate(entries):
        col = ["church", "nudity"].index(entry.concept)
        assert mask[row, col] == 1 and targets[row, col] == entry.cls and targets[row, 1 - col] == 0


def test_dataset_transforms_and_skips_unreadable_images(tmp_path, caplog):
    import timm.data

    root = write_color_root(tmp_path / "r", {("church", "train", "real"): [6]}, corrupt=(2,))
    entries = build_index(root)
    transform = timm.data.create_transform(input_size=(3, 24, 24), is_training=False)
    dataset = ShardImageDataset(entries, ["church"], transform)
    image, target, mask, index = dataset[0]
    assert image.shape == (3, 24, 24) and image.dtype == torch.float32 and target.tolist() == [1.0] and index == 0
    assert (
        dataset[2] is None and "skipping unreadable image data/church/train/real-00000.tar#real_00002" in caplog.text
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=collate_skip_none)
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [3, 2] and batches[0][3].tolist() == [0, 1, 3]
    dataset.close()


def test_workers_read_the_same_images_as_the_main_process(color_root):
    import timm.data

    entries = build_index(color_root, split="test")
    transform = timm.data.create_transform(input_size=(3, 16, 16), is_training=False)
    dataset = ShardImageDataset(entries, ["church", "nudity"], transform)
    expected = torch.stack([dataset[i][0] for i in range(len(dataset))])  # the main process opens the shards
    loader = torch.utils.data.DataLoader(dataset, batch_size=7, num_workers=2, collate_fn=collate_skip_none)
    batches = list(loader)
    got = torch.cat([b[0] for b in batches])
    assert torch.equal(torch.cat([b[3] for b in batches]), torch.arange(len(dataset)))
    assert torch.equal(got, expected)
    dataset.close()
