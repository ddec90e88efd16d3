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
from dataigm.reader import ShardError, read_at
from detectors.data import (
    ShardImageDataset,
    build_index,
    carve_validation,
    collate_skip_none,
    split_group,
    targets_and_mask,
)
from detectors.training.pixels import PixelDataset, cached_pixels, normalize_batch, split_transform


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


def test_read_at_is_the_one_reader_and_names_a_truncated_shard(tmp_path):
    root = write_color_root(tmp_path / "r", {("church", "train", "real"): [3]})
    entries = build_index(root)
    tar = root / entries[-1].shard
    assert read_at(tar, entries[0].offset, entries[0].size) == entries[0].read_bytes()
    with open(tar, "rb") as f:
        assert read_at(tar, entries[1].offset, entries[1].size, fd=f.fileno()) == entries[1].read_bytes()
    dataset = ShardImageDataset(entries, ["church"])
    tar.write_bytes(tar.read_bytes()[: entries[-1].offset + 10])  # the last image loses its tail after indexing
    with pytest.raises(ShardError, match=r"real-00000\.tar: member at byte \d+ is truncated \(10 of \d+ bytes\)"):
        entries[-1].read_bytes()
    assert dataset[2] is None and dataset[0] is not None  # a bad sample is skipped, the others still read
    dataset.close()


def test_pixel_cache_gives_the_eval_inputs_bit_for_bit_and_is_keyed_by_content(tmp_path, caplog):
    import timm.data

    root = write_color_root(tmp_path / "r", {("church", "train", "real"): [6]}, corrupt=(2,))
    entries = build_index(root)
    transform = timm.data.create_transform(input_size=(3, 20, 20), crop_pct=0.9, is_training=False)
    stages, (mean, std) = split_transform(transform)
    path, valid = cached_pixels(entries, stages, tmp_path / "cache", num_workers=2, batch_size=4)
    assert valid.tolist() == [True, True, False, True, True, True]
    pixels = PixelDataset(path, valid, entries, ["church"])
    reference = ShardImageDataset(entries, ["church"], transform)
    for i in (0, 1, 3, 4, 5):
        image, target, mask, index = pixels[i]
        assert image.dtype == torch.uint8 and image.shape == (3, 20, 20) and index == i
        expected = reference[i]
        assert torch.equal(normalize_batch(image[None], mean, std)[0], expected[0])  # the same floats, bit for bit
        assert torch.equal(target, expected[1]) and torch.equal(mask, expected[2])
    assert pixels[2] is None and pixels[(7, 4)][3] == 4  # (epoch, index) pairs read the same row
    reference.close()
    # read back, not rebuilt; another crop or other images is another file
    stamp = path.stat().st_mtime_ns
    assert cached_pixels(entries, stages, tmp_path / "cache")[0] == path and path.stat().st_mtime_ns == stamp
    other_size = split_transform(timm.data.create_transform(input_size=(3, 16, 16), is_training=False))[0]
    assert cached_pixels(entries, other_size, tmp_path / "cache")[0] != path
    assert cached_pixels(entries[:3], stages, tmp_path / "cache")[0] != path
    assert split_transform(timm.data.create_transform(input_size=(3, 16, 16), is_training=True)) is not None
    assert split_transform(lambda image: image) is None


def test_persistent_workers_draw_each_epochs_augmentation(color_root):
    import timm.data

    from detectors.training.data import make_loader
    from detectors.training.distributed import DistInfo

    entries = build_index(color_root, split="test")[:20]
    augment = timm.data.create_transform(input_size=(3, 16, 16), is_training=True)
    dist = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))

    def epochs(workers: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        dataset = ShardImageDataset(entries, ["church", "nudity"], augment, seed=3)
        loader, sampler = make_loader(dataset, 6, seed=5, shuffle=True, dist=dist, num_workers=workers)
        out = []
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            batches = list(loader)
            out.append((torch.cat([b[0] for b in batches]), torch.cat([b[3] for b in batches])))
        return out

    single, workers = epochs(0), epochs(2)
    for (images, order), (w_images, w_order) in zip(single, workers, strict=True):
        assert torch.equal(order, w_order) and torch.equal(images, w_images)  # workers change nothing
        assert sorted(order.tolist()) == list(range(20))
    assert not torch.equal(single[0][1], single[1][1])  # each epoch its own order
    first, second = (dict(zip(o.tolist(), imgs, strict=True)) for imgs, o in single)
    assert not torch.equal(first[0], second[0])  # and its own augmentation of the same image
