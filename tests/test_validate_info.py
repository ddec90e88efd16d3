import json
import shutil

from helpers.data import make_sample, write_test_root

from dataigm.cli import main
from dataigm.info import count_samples
from dataigm.validate import validate_root


def test_valid_root_has_no_problems(small_root, capsys):
    assert validate_root(small_root) == []
    assert main(["validate", str(small_root)]) == 0
    assert "valid" in capsys.readouterr().out


def test_problems_are_listed_and_exit_1(small_root, capsys):
    # a truncated shard, a missing sidecar, a stray temporary file
    tar = small_root / "data/church/train/real-00001.tar"
    tar.write_bytes(tar.read_bytes()[:900])
    (small_root / "meta/church/test/real-00000.json").unlink()
    (small_root / "data/nudity/train/.real-00001.tar.123.tmp").write_bytes(b"partial")
    problems = validate_root(small_root)
    assert any("real-00001.tar" in p and "sidecar says" in p for p in problems)
    assert any("church/test/real-00000.tar: sidecar" in p and "missing" in p for p in problems)
    assert any(".tmp: temporary file" in p for p in problems)
    assert main(["validate", str(small_root)]) == 1
    err = capsys.readouterr().err
    assert "3 problem(s)" in err and "real-00001.tar" in err


def test_duplicate_keys_across_shards_are_found(tmp_path):
    root = write_test_root(tmp_path / "r", {("church", "train", "real"): [2]})
    # same key again in a new shard of another split
    from dataigm import ShardId, write_shard

    write_shard(root, ShardId("church", "test", "real", 0), [make_sample("church", "test", "real", 0)])
    problems = validate_root(root)
    assert problems == [
        "data/church/train/real-00000.tar: sample 'real_00000': duplicate key (also in data/church/test/real-00000.tar)"
    ]


def test_count_mismatch_with_sidecar_is_found(small_root):
    sidecar = small_root / "meta/nudity/train/real-00000.json"
    data = json.loads(sidecar.read_text())
    data["count"] = 7
    sidecar.write_text(json.dumps(data))
    assert validate_root(small_root) == ["data/nudity/train/real-00000.tar: 6 samples but its sidecar says 7"]


def test_missing_shard_listed_in_manifest(small_root):
    (small_root / "data/church/train/laion-00000.tar").unlink()
    shutil.rmtree(small_root / "meta/church/train")
    problems = validate_root(small_root)
    assert "data/church/train/laion-00000.tar: listed in the manifest but missing on disk" in problems


def test_info_counts_per_concept_split_source_label(small_root, capsys):
    counts = count_samples(small_root)
    expected = {}
    for sample in __import__("dataigm").iter_samples(small_root):
        key = (sample.record["concept"], sample.record["split"], sample.record["source"], sample.record["label"])
        expected[key] = expected.get(key, 0) + 1
    assert dict(counts) == expected
    assert counts[("church", "train", "real", "target")] == 4
    assert main(["info", str(small_root), "--json", "true"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["concept"], r["split"], r["source"], r["label"]): r["count"] for r in rows} == expected
    assert main(["info", str(small_root)]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["concept", "split", "source", "label", "count"]
    assert table.splitlines()[-1].split() == ["total", "26"]


def test_validate_prints_the_duplicate_check(small_root, capsys):
    # small_root's images are one-colour: compared for exact duplicates only, and all distinct
    assert main(["validate", str(small_root)]) == 0
    out = capsys.readouterr().out
    assert "duplicates: 0 group(s) among 26 images" in out
    assert "26 flat (nearly one-colour) image(s) compared for exact duplicates only" in out


def test_validate_finds_an_exact_duplicate_across_splits(tmp_path, capsys):
    from dataigm import ShardId, write_shard

    root = write_test_root(tmp_path / "r", {("church", "train", "real"): [3]})
    copy = make_sample("church", "test", "real", 1, label="pair")  # the pixels of train sample 1
    copy = type(copy)("real_copy1", copy.image, copy.ext, copy.cls, copy.record)
    write_shard(root, ShardId("church", "test", "real", 0), [copy])
    assert validate_root(root) == []
    assert main(["validate", str(root), "--duplicates", "fail"]) == 1
    out = capsys.readouterr().out
    assert "1 exact" in out and "1 leak across splits" in out
    assert "data/church/test/real-00000.tar:real_copy1, data/church/train/real-00000.tar:real_00001" in out


def test_an_unfinished_revision_is_a_problem(small_root):
    from dataigm.manifest import update_manifest

    def pending(manifest):  # what a dedup killed after planning leaves in the manifest
        manifest["revisions"] = [{"id": "dedup-0123", "reason": "dedup", "status": "writing", "plan": "x.json"}]

    update_manifest(small_root, pending)
    assert validate_root(small_root) == [
        f"revision dedup-0123 (dedup) is unfinished (writing): run `dataigm dedup {small_root}` to finish it"
    ]


def _root_with_a_copy(tmp_path, split: str):
    """A root of three church/train images and an exact copy of train image 1 in ``split``."""
    from dataigm import ShardId, write_shard

    root = write_test_root(tmp_path / "r", {("church", "train", "real"): [3]})
    copy = make_sample("church", split, "real", 1, label="pair")  # the pixels (and label) of train sample 1
    copy = type(copy)("real_copy1", copy.image, copy.ext, copy.cls, copy.record)
    write_shard(root, ShardId("church", split, "real", 0 if split != "train" else 1), [copy])
    return root


def test_validate_fails_on_an_image_leaked_across_splits(tmp_path, capsys):
    root = _root_with_a_copy(tmp_path, "test")
    assert validate_root(root) == []  # the shards are sound: the leak is the duplicate check's finding
    assert main(["validate", str(root)]) == 1
    captured = capsys.readouterr()
    assert "data/church/test/real-00000.tar:real_copy1, data/church/train/real-00000.tar:real_00001" in captured.out
    (line,) = captured.err.splitlines()
    assert line.startswith(f"{root}: 1 image(s) leak across splits as exact copies (test/train: 1); ")
    assert "--allow-split-leakage" in line


def test_a_known_leak_can_be_allowed(tmp_path, capsys):
    root = _root_with_a_copy(tmp_path, "test")
    assert main(["validate", str(root), "--allow-split-leakage"]) == 0
    captured = capsys.readouterr()
    assert "1 leak across splits" in captured.out and captured.err == ""
    # allowing the leak does not allow duplicates when they are asked to fail
    assert main(["validate", str(root), "--allow-split-leakage", "--duplicates", "fail"]) == 1


def test_duplicates_within_a_split_are_a_report(tmp_path, capsys):
    root = _root_with_a_copy(tmp_path, "train")
    assert main(["validate", str(root)]) == 0
    captured = capsys.readouterr()
    assert "1 exact" in captured.out and "0 leak across splits" in captured.out
    assert "within train/real" in captured.out and captured.err == ""


def test_a_near_copy_across_splits_is_listed_and_fails_only_when_asked(tmp_path, capsys):
    import io

    import numpy as np
    from PIL import Image

    from dataigm import ShardId, write_shard

    def encoded(fmt: str, **kwargs) -> bytes:
        pixels = np.random.default_rng(0).integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).resize((64, 48)).save(buffer, format=fmt, **kwargs)
        return buffer.getvalue()

    root = write_test_root(tmp_path / "r", {("church", "train", "real"): [1]})
    for split, data, ext in (("train", encoded("PNG"), "png"), ("test", encoded("JPEG", quality=90), "jpg")):
        sample = make_sample("church", split, "real", 5)
        sample = type(sample)(f"real_{split}copy", data, ext, sample.cls, sample.record)
        write_shard(root, ShardId("church", split, "real", 1 if split == "train" else 0), [sample])
    assert main(["validate", str(root)]) == 0
    captured = capsys.readouterr()
    assert "1 near" in captured.out and "1 leak across splits" in captured.out and captured.err == ""
    assert main(["validate", str(root), "--duplicates", "fail"]) == 1
