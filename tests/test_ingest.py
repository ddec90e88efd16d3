import hashlib
import io

import pytest
from helpers.data import image_bytes
from helpers.jobs import kill_mid_run
from PIL import Image

from dataigm import iter_samples, read_manifest
from dataigm.cli import main
from dataigm.ingest import ingest
from dataigm.sources.folder import ingest_folder, plan_folder
from dataigm.validate import validate_root


def _by_origin(root):
    return {s.record["origin"]: s for s in iter_samples(root, checksum=True)}


def test_class_folders_bytes_kept_corrupt_skipped(image_folder, tmp_path, capsys):
    root = tmp_path / "root"
    rc = main(
        [
            "ingest",
            str(image_folder),
            "--out",
            str(root),
            "--concept",
            "church",
            "--split",
            "train",
            "--source",
            "real",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "5 samples" in out and "1 file(s) skipped" in out and "skipped other/broken.png" in out
    assert "ignored other/notes.txt" in out
    samples = _by_origin(root)
    assert sorted(samples) == ["church/c0.png", "church/c1.png", "church/c2.jpg", "other/o0.png", "other/o1.png"]
    for origin, sample in samples.items():
        assert sample.image == (image_folder / origin).read_bytes()  # bytes kept as they are
        assert sample.record["label"] == ("target" if origin.startswith("church") else "pair")
        assert sample.cls == (1 if origin.startswith("church") else 0)
    assert samples["church/c2.jpg"].ext == "jpg"
    sidecar_errors = [
        e for p in (root / "meta").rglob("*.json") for e in __import__("json").loads(p.read_text())["errors"]
    ]
    assert [e["file"] for e in sidecar_errors] == ["other/broken.png"]
    assert validate_root(root) == []
    assert read_manifest(root)["image_extensions"] == ["jpg", "png"]


def test_single_label_and_resize(image_folder, tmp_path):
    root = tmp_path / "root"
    report = ingest_folder(image_folder / "church", root, concept="church", label="church", resize=6, progress=False)
    assert report.samples == 3
    for sample in iter_samples(root):
        image = sample.decode()
        assert min(image.size) == 6 and (sample.record["height"], sample.record["width"]) == (
            image.height,
            image.width,
        )
        assert sample.record["label"] == "target"


def test_image_format_reencodes_everything(image_folder, tmp_path):
    root = tmp_path / "root"
    ingest_folder(image_folder, root, concept="church", image_format="png", progress=False)
    samples = list(iter_samples(root))
    assert {s.ext for s in samples} == {"png"}
    assert all(Image.open(io.BytesIO(s.image)).format == "PNG" for s in samples)


def test_rerun_after_interruption_has_exactly_the_same_keys(image_folder, tmp_path):
    full = tmp_path / "full"
    ingest_folder(image_folder, full, concept="church", samples_per_shard=2, progress=False)
    expected = sorted(s.key for s in iter_samples(full))

    root = tmp_path / "root"
    ingest_folder(image_folder, root, concept="church", samples_per_shard=2, progress=False)
    # simulate a kill while shard 1 was written: its tar renamed, no sidecar yet, and a stray temporary
    (root / "meta/church/train/real-00001.json").unlink()
    (root / "data/church/train/.real-00001.tar.99.tmp").write_bytes(b"half")
    assert any("temporary file" in p for p in validate_root(root))
    report = ingest_folder(image_folder, root, concept="church", samples_per_shard=2, progress=False)
    assert (report.shards_written, report.shards_skipped) == (1, 2)
    assert sorted(s.key for s in iter_samples(root)) == expected
    assert validate_root(root) == []
    full_tars = {p.name: p.read_bytes() for p in (full / "data").rglob("*.tar")}
    assert full_tars == {p.name: p.read_bytes() for p in (root / "data").rglob("*.tar")}


def test_second_job_into_the_same_group_gets_new_shards(image_folder, tmp_path):
    root = tmp_path / "root"
    ingest_folder(image_folder / "church", root, concept="church", label="target", progress=False)
    ingest_folder(image_folder / "other", root, concept="church", label="pair", progress=False)
    assert sorted(p.name for p in (root / "data/church/train").iterdir()) == ["real-00000.tar", "real-00001.tar"]
    assert len(list(iter_samples(root))) == 5


def test_igmu_demo_layout(tmp_path):
    folder = tmp_path / "demo"
    files = {
        "Church/train/church/REAL_a.png": (1, 2, 3),
        "Church/train/church/SD-GEN_b.png": (4, 5, 6),
        "Church/test/other/LAION_c.png": (7, 8, 9),
        "VanGogh/train/vangogh/REAL_d.png": (9, 9, 9),
        "nudity/train/safe/SD-GEN_e.png": (1, 1, 1),
    }
    for rel, color in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(image_bytes(color))
    root = tmp_path / "root"
    assert main(["ingest", str(folder), "--out", str(root)]) == 0
    got = {s.record["origin"]: s.record for s in iter_samples(root)}
    assert {o: (r["concept"], r["split"], r["source"], r["label"]) for o, r in got.items()} == {
        "Church/train/church/REAL_a.png": ("church", "train", "real", "target"),
        "Church/train/church/SD-GEN_b.png": ("church", "train", "generated", "target"),
        "Church/test/other/LAION_c.png": ("church", "test", "laion", "pair"),
        "VanGogh/train/vangogh/REAL_d.png": ("van_gogh", "train", "real", "target"),
        "nudity/train/safe/SD-GEN_e.png": ("nudity", "train", "generated", "pair"),
    }
    assert validate_root(root) == []


def test_hf_dataset_ingest(tmp_path):
    import datasets

    images = [image_bytes((i * 40, 0, 0)) for i in range(4)]
    ds = datasets.Dataset.from_dict(
        {"img": [{"bytes": b, "path": None} for b in images], "y": [0, 1, 1, 0]},
        features=datasets.Features({"img": datasets.Image(), "y": datasets.ClassLabel(names=["clean", "nsfw"])}),
    )
    ds.save_to_disk(tmp_path / "saved")
    local = tmp_path / "local_ds"
    datasets.load_from_disk(tmp_path / "saved").to_parquet(str(local / "train.parquet"))
    root = tmp_path / "root"
    args = [
        "ingest",
        "--hf-dataset",
        str(local),
        "--image-column",
        "img",
        "--label-column",
        "y",
        "--concept",
        "nudity",
    ]
    assert main([*args, "--out", str(root), "--class-map", "clean=pair,nsfw=target"]) == 0
    samples = sorted(iter_samples(root), key=lambda s: s.record["origin"])
    assert [s.record["label"] for s in samples] == ["pair", "target", "target", "pair"]
    assert [hashlib.sha256(s.image).hexdigest() for s in samples] == [hashlib.sha256(b).hexdigest() for b in images]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"concept": "chruch"}, "Unknown concept 'chruch'; known concepts: church"),
        ({"concept": "church", "source": "web"}, "Unknown source 'web'; valid sources: real, laion, generated"),
        ({"concept": "nudity"}, "class 'church' is not a class of concept 'nudity'; valid: .*nude.*safe"),
        ({}, "--concept is required"),
    ],
)
def test_bad_input_is_named(image_folder, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan_folder(image_folder, **kwargs)


def test_bad_input_leaves_root_untouched(image_folder, tmp_path, capsys):
    root = tmp_path / "root"
    assert main(["ingest", str(image_folder), "--out", str(root), "--concept", "nudity"]) == 2
    assert "not a class of concept 'nudity'" in capsys.readouterr().err
    assert not root.exists()
    with pytest.raises(ValueError, match="--samples-per-shard must be at least 1"):
        ingest([], root, samples_per_shard=0)


def test_mixed_png_and_jpeg_load_as_one_column_each(image_folder, tmp_path):
    import datasets

    root = tmp_path / "root"
    ingest_folder(image_folder, root, concept="church", progress=False)
    ds = datasets.load_dataset(str(root), "church", split="train")
    assert {"png", "jpg"} <= set(ds.column_names)
    assert sum(row["jpg"] is not None for row in ds) == 1 and sum(row["png"] is not None for row in ds) == 4


@pytest.mark.slow
def test_killed_ingest_resumes_to_the_uninterrupted_result(tmp_path):
    folder = tmp_path / "many" / "church"
    folder.mkdir(parents=True)
    for i in range(12):  # the kill is certain to land mid-run (kill_mid_run pauses the job): no need for many
        (folder / f"{i:03d}.png").write_bytes(image_bytes((i * 4, 10, 10)))
    args = ["ingest", str(folder), "--concept", "church", "--label", "church", "--samples-per-shard", "1"]
    full = tmp_path / "full"
    assert main([*args, "--out", str(full), "--progress", "false"]) == 0

    root = tmp_path / "root"
    done_at_kill = kill_mid_run([*args, "--out", str(root)], root, pause_after=3)  # after its 3rd tar
    assert 0 < done_at_kill < 12 and len(list((root / "data").rglob("*.tar"))) == 3
    assert main([*args, "--out", str(root), "--progress", "false"]) == 0
    assert validate_root(root) == []
    tars = lambda r: {p.name: p.read_bytes() for p in (r / "data").rglob("*.tar")}  # noqa: E731
    assert tars(root) == tars(full) and len(tars(full)) == 12


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nsfw=target,sfw=pair", {"nsfw": "target", "sfw": "pair"}),
        ("497=target,281,404, 423=pair", {"497": "target", "281": "pair", "404": "pair", "423": "pair"}),
        ("", {}),
    ],
)
def test_class_map_names_can_share_a_label(text, expected):
    from dataigm.sources.items import parse_class_map

    assert parse_class_map(text) == expected


@pytest.mark.parametrize(
    ("text", "message"), [("497=target,281", "entry '281' has no label"), ("a=target,,b=pair", "empty class name")]
)
def test_class_map_without_a_label_is_refused(text, message):
    from dataigm.sources.items import parse_class_map

    with pytest.raises(ValueError, match=message):
        parse_class_map(text)
