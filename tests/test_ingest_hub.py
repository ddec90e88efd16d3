"""``dataigm ingest --hf-dataset``: a local Hugging Face dataset streamed, rows chosen by ``--where``, labelled by
``--class-map`` (integer labels or ClassLabel names), capped by ``--max-per-class``."""

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
from helpers.data import image_bytes

from dataigm import iter_samples, read_manifest
from dataigm.cli import main
from dataigm.validate import validate_root

NAMES = ["tench", "church", "parachute", "tiger_cat", "airliner"]
N = 40


def _row(i: int) -> dict:
    return {"label": (i * 7) % 5, "artist": 22 if i % 3 else 5, "title": f"picture {i}"}


@pytest.fixture(scope="module")
def hub_dataset(tmp_path_factory) -> Path:
    """A local parquet dataset of 40 rows: ``image`` (PNG bytes), ``label`` (ClassLabel), ``artist``, ``title``."""
    import datasets

    folder = tmp_path_factory.mktemp("hub") / "local_ds"
    rows = [_row(i) for i in range(N)]
    ds = datasets.Dataset.from_dict(
        {
            "image": [{"bytes": image_bytes((i * 6, 255 - i * 6, 7)), "path": None} for i in range(N)],
            "label": [r["label"] for r in rows],
            "artist": [r["artist"] for r in rows],
            "title": [r["title"] for r in rows],
        },
        features=datasets.Features(
            {
                "image": datasets.Image(),
                "label": datasets.ClassLabel(names=NAMES),
                "artist": datasets.Value("int64"),
                "title": datasets.Value("string"),
            }
        ),
    )
    # two files: the stream crosses a file boundary
    ds.select(range(25)).to_parquet(str(folder / "data" / "train-00000-of-00002.parquet"))
    ds.select(range(25, N)).to_parquet(str(folder / "data" / "train-00001-of-00002.parquet"))
    return folder


def _expected(where, mapping: dict[int, str], cap: int | None) -> dict[int, str]:
    """The rows (index -> label) an ingest should keep, computed here without the library."""
    out, per_class = {}, {}
    for i in range(N):
        row = _row(i)
        if not where(row) or row["label"] not in mapping:
            continue
        label = mapping[row["label"]]
        if cap is not None and per_class.get(label, 0) >= cap:
            continue
        per_class[label] = per_class.get(label, 0) + 1
        out[i] = label
    return out


def _ingested(root: Path) -> dict[int, object]:
    return {int(s.record["origin"].rsplit(":", 1)[1]): s for s in iter_samples(root, checksum=True)}


def _arrow_files() -> set[str]:
    cache = Path(os.environ["HF_DATASETS_CACHE"])
    return {str(p) for p in cache.rglob("*.arrow")} if cache.exists() else set()


def test_streamed_rows_where_class_map_by_number_and_name_and_cap(hub_dataset, tmp_path, capsys, monkeypatch):
    import dataigm.sources.hub

    monkeypatch.setattr(dataigm.sources.hub, "BATCH", 4)  # rows per batch of the selection pass
    root = tmp_path / "root"
    arrow_before = _arrow_files()
    args = ["ingest", "--hf-dataset", str(hub_dataset), "--concept", "church", "--out", str(root)]
    args += ["--where", "artist == 22", "--class-map", "1=target,tiger_cat,4=pair", "--max-per-class", "4"]
    assert main([*args, "--samples-per-shard", "3"]) == 0
    expected = _expected(lambda r: r["artist"] == 22, {1: "target", 3: "pair", 4: "pair"}, 4)
    samples = _ingested(root)
    assert {i: s.record["label"] for i, s in samples.items()} == expected
    assert sorted(expected.values()).count("target") == 4 and sorted(expected.values()).count("pair") == 4
    for i, sample in samples.items():
        color = (i * 6, 255 - i * 6, 7)
        assert hashlib.sha256(sample.image).hexdigest() == hashlib.sha256(image_bytes(color)).hexdigest()
        assert sample.record["source"] == "real" and sample.record["split"] == "train"
        assert sample.record["origin"] == f"hf:{hub_dataset}:train:{i}"
        assert sample.record["label_source"] == "dataset"  # the dataset's label column, through --class-map
    # the selection pass stopped after the batch in which both classes were full, not at the end of the dataset
    out = capsys.readouterr().out
    assert f"{(max(expected) // 4 + 1) * 4} rows read" in out and max(expected) < N - 4, out
    assert _arrow_files() == arrow_before  # streamed: no Arrow copy of the dataset in the cache
    # the counts and the resolved selection are written next to the shards
    ((job, entry),) = read_manifest(root)["jobs"].items()
    counts = json.loads((root / "meta" / f"{job}-counts.json").read_text())
    assert counts["rows_selected"] == counts["written"] == {"pair": 4, "target": 4} and counts["failed"] == 0
    assert f"counts in meta/{job}-counts.json" in out
    config = entry["config"]
    assert (config["ingest"], config["hf_dataset"], config["where"], config["max_per_class"]) == (
        "hf_dataset",
        str(hub_dataset),
        "artist == 22",
        4,
    )
    assert config["class_map"] == {"1": "target", "tiger_cat": "pair", "4": "pair"}
    assert validate_root(root) == []


def test_where_on_the_label_column_without_cap(hub_dataset, tmp_path):
    root = tmp_path / "root"
    args = ["ingest", "--hf-dataset", str(hub_dataset), "--concept", "parachute", "--out", str(root)]
    assert (
        main([*args, "--where", "label in [2, 0] and title != 'picture 5'", "--class-map", "parachute=target,0=pair"])
        == 0
    )
    expected = _expected(lambda r: r["label"] in (2, 0) and r["title"] != "picture 5", {2: "target", 0: "pair"}, None)
    assert {i: s.record["label"] for i, s in _ingested(root).items()} == expected
    from datasets import load_dataset

    rows = {int(r["json"]["origin"].rsplit(":", 1)[1]): r for r in load_dataset(str(root), split="train")}
    assert {i: r["cls"] for i, r in rows.items()} == {i: int(label == "target") for i, label in expected.items()}
    assert {r["json"]["label_source"] for r in rows.values()} == {"dataset"}


def test_a_folder_dataset_without_column_projection(tmp_path):
    """An imagefolder dataset has no ``columns`` option: the selection pass drops the image column instead."""
    folder = tmp_path / "folder_ds"
    for name, count in (("church", 3), ("other", 2)):
        (folder / "train" / name).mkdir(parents=True)
        for i in range(count):
            (folder / "train" / name / f"{i}.png").write_bytes(image_bytes((i * 50, 9, 9)))
    root = tmp_path / "root"
    assert (
        main(
            ["ingest", "--hf-dataset", str(folder), "--concept", "church", "--out", str(root), "--where", "label == 0"]
        )
        == 0
    )
    samples = list(iter_samples(root))
    assert len(samples) == 3 and {s.record["label"] for s in samples} == {"target"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--class-map", "7=target"], r"--class-map names label 7, but .* column 'label' has labels 0\.\.4"),
        (["--class-map", "cathedral=target"], r"--class-map names class 'cathedral', which .* does not have; its classes: tench, church, parachute, tiger_cat, airliner"),
        (["--class-map", "1=target,3"], r"--class-map entry '3' has no label"),
        (["--where", "painter == 22"], r"--where 'painter == 22': 'painter' is not a column; columns: label, artist, title"),
        (["--where", "artist =< 3"], r"--where 'artist =< 3' does not parse: invalid syntax at column 8: artist <HERE>=< 3"),
        (["--image-column", "img"], r"has no column 'img'; columns: image, label, artist, title"),
        (["--max-per-class", "0"], r"--max-per-class must be at least 1, got 0"),
        (["--where", "artist == 3", "--class-map", "1=target"], r"no row of --hf-dataset .* is selected|No images to ingest"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_writes_nothing(hub_dataset, tmp_path, capsys, extra, message):
    root = tmp_path / "root"
    assert main(["ingest", "--hf-dataset", str(hub_dataset), "--concept", "church", "--out", str(root), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not root.exists()


def test_images_are_read_in_one_forward_stream_and_written_in_row_order(hub_dataset, tmp_path):
    from dataigm.ingest import ingest
    from dataigm.sources import plan_hf_stream

    plan = plan_hf_stream(str(hub_dataset), "church", class_names={str(k): "pair" for k in range(5)})
    assert len(plan.items) == N
    ingest(plan.items, tmp_path / "root", samples_per_shard=7, progress=False)
    cursor = plan.items[0].read.func.__self__
    assert cursor.restarts == 1  # the rows came in order: rows 2, 10, 11 ... never sent it back to the start
    first = sorted((tmp_path / "root" / "data" / "church" / "train").glob("*.tar"))[0]
    from dataigm import iter_shard

    assert [s.record["origin"].rsplit(":", 1)[1] for s in iter_shard(first)] == [str(i) for i in range(7)]
