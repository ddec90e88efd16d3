"""One pass over images with DataLoader workers: judge predictions, probe features, the pixel cache, FID features and
the judge evaluation give the same numbers with 0 and 2 workers; the default count follows the host and the size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.data import write_color_root, write_paper_layout
from helpers.models import save_untrained_judge
from PIL import Image

from detectors import build_index, load_judge
from detectors.data import (
    MIN_BATCHES_FOR_WORKERS,
    MIN_PIXELS_FOR_WORKERS,
    default_num_workers,
    entry_pixels,
    one_pass_workers,
)

BATCH = 8  # the colour root's 168 images make 21 batches (of 16 px images: the default reads them in process)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A colour root (two images unreadable) and an untrained two-concept timm judge at 32 px."""
    base = tmp_path_factory.mktemp("predict-workers")
    root = write_color_root(base / "colors", corrupt=(5, 77))
    judge = load_judge(f"local-dir:{save_untrained_judge(base / 'judge')}", device="cpu")
    return root, judge


# ------------------------------------------------------------------ the rule


LARGE, SMALL = 512 * 512, MIN_PIXELS_FOR_WORKERS - 1


@pytest.mark.parametrize(
    ("asked", "n_images", "batch_size", "pixels", "expected"),
    [
        (None, MIN_BATCHES_FOR_WORKERS * 32 - 1, 32, LARGE, 0),  # fewer than MIN_BATCHES_FOR_WORKERS batches
        (None, MIN_BATCHES_FOR_WORKERS * 32, 32, LARGE, "host"),
        (None, 10_000, 32, MIN_PIXELS_FOR_WORKERS, "host"),
        (None, 10_000, 32, None, "host"),  # size unknown (unreadable first image): by the count alone
        (None, 10_000, 32, SMALL, 0),  # small images decode faster than a worker pays off
        (0, 10_000, 32, LARGE, 0),  # 0 stays "in this process"
        (3, 5, 32, SMALL, 3),  # an explicit count is kept, however small the pass
    ],
)
def test_one_pass_workers_rule(asked, n_images, batch_size, pixels, expected):
    want = default_num_workers() if expected == "host" else expected
    assert one_pass_workers(asked, n_images, batch_size, lambda: pixels) == want


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_one_pass_workers_refuses_a_bad_count(bad):
    with pytest.raises(ValueError, match=f"num_workers={bad!r}.*None.*0"):
        one_pass_workers(bad, 100, 8)


@pytest.mark.parametrize(
    ("cores", "world_size", "expected"),
    [(1, 1, 1), (2, 1, 1), (4, 1, 3), (16, 1, 8), (64, 1, 8), (16, 4, 3), (8, 8, 1)],
)
def test_default_num_workers_is_sized_to_the_host(monkeypatch, cores, world_size, expected):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert default_num_workers(world_size) == expected


# ------------------------------------------------------------------ same numbers with and without workers


def _same_prediction(a, b) -> None:
    assert np.array_equal(a.probabilities, b.probabilities, equal_nan=True)
    assert np.array_equal(a.present, b.present) and np.array_equal(a.valid, b.valid)
    assert np.array_equal(a.unreadable, b.unreadable) and a.keys == b.keys


def test_predict_entries_is_the_same_with_0_2_and_default_workers(data):
    root, judge = data
    entries = build_index(root)
    assert entry_pixels(entries) == 16 * 16 and one_pass_workers(None, len(entries), BATCH, lambda: 256) == 0
    serial = judge.predict_entries(entries, batch_size=BATCH, num_workers=0)
    _same_prediction(serial, judge.predict_entries(entries, batch_size=BATCH, num_workers=2))
    _same_prediction(serial, judge.predict_entries(entries, batch_size=BATCH))
    # the two corrupt images have no judgement; every other row is the judge on the decoded image itself
    assert serial.unreadable.sum() == 2 and np.isnan(serial.probabilities[serial.unreadable]).all()
    readable = [i for i in range(len(entries)) if not serial.unreadable[i]]
    direct = judge.predict([_decode(entries[i]) for i in readable[:BATCH]], batch_size=BATCH)
    assert np.array_equal(direct.probabilities, serial.probabilities[readable[:BATCH]])
    assert serial.keys == [e.uid for e in entries]


def _decode(entry) -> Image.Image:
    import io

    with Image.open(io.BytesIO(entry.read_bytes())) as img:
        return img.convert("RGB")


def test_predict_on_a_list_is_the_same_with_workers_and_reads_files_lazily(data, tmp_path):
    root, judge = data
    entries = [e for i, e in enumerate(build_index(root)) if i not in (5, 77)][:40]
    files = []
    for i, entry in enumerate(entries):
        path = tmp_path / f"{i:03d}.png"
        path.write_bytes(entry.read_bytes())
        files.append(path)
    pil = judge.predict([_decode(e) for e in entries], batch_size=BATCH, num_workers=0)
    assert pil.keys is None and not pil.unreadable.any() and len(pil) == 40
    for workers in (0, 2, None):
        _same_prediction(pil, judge.predict(files, batch_size=BATCH, num_workers=workers))
    with pytest.raises(FileNotFoundError):  # a bad input is the caller's error, also from a worker
        judge.predict([*files[:9], tmp_path / "missing.png"], batch_size=BATCH, num_workers=2)


def test_probe_features_and_pixel_cache_are_the_same_with_workers(data, tmp_path):
    import timm.data

    from detectors.training.features import extract_features
    from detectors.training.pixels import build_pixels, split_transform

    root, judge = data
    entries = build_index(root, split="train")
    model, transform = judge.model, judge.image_transform
    features0, valid0 = extract_features(model, entries, transform, batch_size=BATCH, num_workers=0)
    features, valid = extract_features(model, entries, transform, batch_size=BATCH, num_workers=2)
    assert torch.equal(features, features0) and torch.equal(valid, valid0)
    corrupt = [i for i, e in enumerate(entries) if e.key in ("real_00005", "generated_00077")]
    assert len(corrupt) == 2 and valid0.sum() == len(entries) - 2 and not valid0[corrupt].any()
    assert features0[valid0].abs().sum(dim=1).gt(0).all()

    transform = timm.data.create_transform(input_size=(3, 24, 24), is_training=False)
    stages, _ = split_transform(transform)
    build_pixels(entries, stages, tmp_path / "p0.npy", num_workers=0, batch_size=BATCH)
    build_pixels(entries, stages, tmp_path / "p2.npy", num_workers=2, batch_size=BATCH)
    p0, p2 = np.load(tmp_path / "p0.npy"), np.load(tmp_path / "p2.npy")
    assert p0.shape == (len(entries), 24, 24, 3) and np.array_equal(p0, p2)
    assert np.array_equal(np.load(tmp_path / "p0.valid.npy"), np.load(tmp_path / "p2.valid.npy"))
    expected = _decode(entries[0])
    for stage in stages:  # the transform's PIL stages, applied here on their own
        expected = stage(expected)
    assert np.array_equal(p0[0], np.asarray(expected)) and p0[0].shape == (24, 24, 3)


def test_evaluation_judgements_and_fid_features_are_the_same_with_workers(data, tmp_path):
    import timm

    from detectors.evaluation import aspects
    from detectors.evaluation.images import LoadedImages, from_paper_layout
    from detectors.evaluation.quality import fid_features, fid_metric

    _, judge = data
    write_paper_layout(tmp_path / "paper")
    images = from_paper_layout(tmp_path / "paper", "Nudity", "nudity")
    forget = [im for im in images if im.kind == "forget"]
    # the layout's 8 images per method and kind: batches of 1 give the default workers
    by_workers = {w: aspects._judged(judge, "nudity", forget, batch_size=1, num_workers=w) for w in (0, 2, None)}
    for present, judged in by_workers.values():
        assert np.array_equal(present, by_workers[0][0]) and np.array_equal(judged, by_workers[0][1])
    direct = judge.predict([im.image() for im in forget], batch_size=1, num_workers=0)
    assert np.array_equal(by_workers[0][0], direct.is_present("nudity"))
    assert aspects.forgetting(images, judge, "nudity", num_workers=2) == aspects.forgetting(images, judge, "nudity", 0)

    torch.manual_seed(0)
    metric = fid_metric(timm.create_model("resnet10t", pretrained=False, num_classes=0))
    loaded = LoadedImages(images)
    f0 = fid_features(loaded, metric, batch_size=4, num_workers=0)
    assert f0.shape == (len(images), 512)
    assert np.array_equal(f0, fid_features(loaded, metric, batch_size=4, num_workers=2))
    assert np.array_equal(f0, fid_features([im.image() for im in images], metric, batch_size=4, num_workers=0))


def test_judge_evaluation_is_the_same_with_workers(data):
    from detectors.audit.judge_eval import evaluate_judge

    root, judge = data
    serial = evaluate_judge(judge, root, split="test", n_boot=20, batch_size=BATCH, num_workers=0)
    assert serial.report["unreadable_images"] == 0 and serial.report["rows"]
    with_workers = evaluate_judge(judge, root, split="test", n_boot=20, batch_size=BATCH, num_workers=2)
    assert with_workers.report == serial.report


def test_commands_refuse_a_bad_worker_count(tmp_path):
    from detectors.audit.judge_eval import check_eval_options
    from detectors.evaluation.config import EvalConfig

    write_paper_layout(tmp_path / "paper")
    options = dict(
        out=str(tmp_path / "out"), concepts=["nudity"], judge="nudenet", paper_layout=str(tmp_path / "paper"),
        paper_tasks={"nudity": "Nudity"},
    )  # fmt: skip
    assert EvalConfig(**options).loader_workers is None and EvalConfig(**options, loader_workers=0).loader_workers == 0
    with pytest.raises(ValueError, match="loader_workers must be an integer >= 0, got -1"):
        EvalConfig(**options, loader_workers=-1)
    # num_workers once named the image readers; now it partitions the evaluation and must come with worker_index
    with pytest.raises(
        ValueError, match="num_workers partitions the evaluation and needs worker_index .* loader_workers"
    ):
        EvalConfig(**options, num_workers=4)
    check_eval_options(num_workers=None)
    with pytest.raises(ValueError, match=r"num_workers=-2 must be None \(sized to the host\), 0"):
        check_eval_options(num_workers=-2)
