"""Duplicates and leakage (exact by pixels, near by perceptual hash), `dataigm dedup` revisions, balancing."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers.data import image_bytes
from helpers.jobs import kill_mid_run
from PIL import Image

from dataigm import Sample, ShardId, iter_samples, load_registry, make_key, write_shard
from dataigm.cli import main
from dataigm.dataset_readme import write_dataset_readme
from dataigm.dedup import balance_root, choose_balance, dedup_root
from dataigm.duplicates import find_duplicates, near_pairs, pixel_hashes
from dataigm.manifest import open_root, read_manifest, register_concepts
from dataigm.sources.folder import ingest_folder
from dataigm.validate import validate_root


def _noise(seed: int, size: int = 48) -> Image.Image:
    """A textured image (smooth blobs plus noise) whose perceptual hash is far from another seed's."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
    pixels = np.asarray(image, dtype=np.int16) + rng.integers(-8, 9, size=(size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _sample(split: str, source: str, name: str, data: bytes, label: str = "target", ext: str = "png") -> Sample:
    record = {
        "concept": "church",
        "label": label,
        "category": load_registry().get("church").category,
        "source": source,
        "split": split,
        "height": 48,
        "width": 48,
        "origin": f"test/{name}",
    }
    return Sample(make_key(source, name), data, ext, 1 if label == "target" else 0, record)


# The root of the duplicate tests: every kind of duplicate once, and images that must not match.
# name -> (split, source, label, image); images are seeds of _noise, "jpeg:N" its JPEG, "flat:R,G,B" one colour.
LAYOUT = {
    "a1": ("train", "real", "target", "1"),
    "a2": ("train", "real", "target", "1"),  # exact, within train/real
    "b1": ("train", "real", "pair", "2"),
    "b2": ("test", "real", "pair", "2"),  # exact leak: train and test
    "c1": ("train", "real", "target", "3"),
    "c2": ("test", "real", "target", "jpeg:3"),  # near leak: a JPEG of c1 in test
    "d1": ("train", "real", "pair", "4"),
    "d2": ("train", "laion", "pair", "4"),  # exact, across sources
    "e1": ("train", "real", "target", "5"),
    "e2": ("train", "real", "pair", "5"),  # exact, conflicting labels
    "f1": ("train", "real", "target", "6"),
    "f2": ("test", "real", "pair", "7"),
    "g1": ("train", "real", "pair", "flat:200,30,30"),  # flat images of other colours are not near duplicates
    "g2": ("train", "real", "target", "flat:20,90,250"),
}
GROUPS = {frozenset(p) for p in ({"a1", "a2"}, {"b1", "b2"}, {"c1", "c2"}, {"d1", "d2"}, {"e1", "e2"})}


def _image(spec: str) -> tuple[bytes, str]:
    if spec.startswith("jpeg:"):
        return _encode(_noise(int(spec[5:])), "JPEG", quality=90), "jpg"
    if spec.startswith("flat:"):
        return image_bytes(tuple(int(v) for v in spec[5:].split(",")), size=(48, 48)), "png"
    return _encode(_noise(int(spec))), "png"


def _write_root(root: Path, layout: dict = LAYOUT) -> Path:
    open_root(root)
    register_concepts(root, [load_registry().get("church")])
    shards: dict[tuple[str, str], list[Sample]] = {}
    for name, (split, source, label, spec) in layout.items():
        data, ext = _image(spec)
        shards.setdefault((split, source), []).append(_sample(split, source, name, data, label, ext))
    for (split, source), samples in shards.items():
        write_shard(root, ShardId("church", split, source, 0), samples[:4], job_id="test")
        if samples[4:]:
            write_shard(root, ShardId("church", split, source, 1), samples[4:], job_id="test")
    write_dataset_readme(root)
    return root


def _names(group) -> frozenset:
    return frozenset(m.key.split("_", 1)[1] for m in group.members)


def test_exact_duplicates_are_the_same_pixels_not_the_same_bytes():
    image = _noise(0)
    png, webp = _encode(image), _encode(image, "WEBP", lossless=True)
    assert png != webp
    expected = hashlib.sha256(b"RGB 48x48\n" + np.asarray(image).tobytes()).hexdigest()
    assert pixel_hashes(png)[0] == pixel_hashes(webp)[0] == expected
    assert pixel_hashes(_encode(_noise(1)))[0] != expected


@pytest.mark.parametrize("distance", [0, 1, 3, 6])
def test_near_pairs_agree_with_comparing_every_pair(distance):
    rng = np.random.default_rng(distance)
    hashes = [int(h) for h in rng.integers(0, 2**63, size=300, dtype=np.int64)]
    for i in range(0, 300, 3):  # neighbours at 0..8 flipped bits
        flips = rng.choice(64, size=int(rng.integers(0, 9)), replace=False)
        hashes.append(hashes[i] ^ sum(1 << int(b) for b in flips))
    expected = {
        (i, j)
        for i in range(len(hashes))
        for j in range(i + 1, len(hashes))
        if bin(hashes[i] ^ hashes[j]).count("1") <= distance
    }
    assert len(expected) > 5
    assert near_pairs(hashes, distance) == expected


def test_duplicates_within_a_split_across_splits_and_sources(tmp_path):
    root = _write_root(tmp_path / "root")
    report = find_duplicates(root)
    assert {_names(g) for g in report.groups} == GROUPS
    kinds = {_names(g): g.kind for g in report.groups}
    assert kinds[frozenset({"c1", "c2"})] == "near" and kinds[frozenset({"a1", "a2"})] == "exact"
    leaks = {_names(g) for g in report.groups if g.leakage}
    assert leaks == {frozenset({"b1", "b2"}), frozenset({"c1", "c2"})}
    assert {_names(g) for g in report.groups if g.cross_source} == {frozenset({"d1", "d2"})}
    assert {_names(g) for g in report.groups if g.conflict} == {frozenset({"e1", "e2"})}
    assert (report.hashed, report.flat, report.extra_copies) == (14, 2, 5)
    assert report.count("within") == 2  # a and e
    # exact matching only
    assert {_names(g) for g in find_duplicates(root, near_distance=0).groups} == GROUPS - {frozenset({"c1", "c2"})}


def test_hashes_are_cached_by_shard_content(tmp_path):
    root = _write_root(tmp_path / "root")
    first = find_duplicates(root).to_dict()
    caches = sorted((root / ".cache/dataigm/hashes").glob("*.json"))
    shas = {entry["sha256"] for entry in read_manifest(root)["shards"].values()}
    assert {p.name.split("-v")[0] for p in caches} == shas
    for path in caches:  # a cache entry is used as it is: poison one and see it come back
        data = json.loads(path.read_text())
        data["samples"] = {k: ["0" * 64, "0" * 16, False, v[3]] for k, v in data["samples"].items()}
        path.write_text(json.dumps(data))
    poisoned = find_duplicates(root)
    assert poisoned.to_dict() != first
    shutil.rmtree(root / ".cache")
    assert find_duplicates(root).to_dict() == first


def test_hashing_in_worker_processes_gives_the_same_report(tmp_path):
    root = _write_root(tmp_path / "root")
    in_process = find_duplicates(root).to_dict()
    shutil.rmtree(root / ".cache")
    assert find_duplicates(root, workers=2).to_dict() == in_process


def test_validate_reports_duplicates_and_fails_only_when_asked(tmp_path, capsys):
    root = _write_root(tmp_path / "root")
    assert validate_root(root) == []  # duplicates are not integrity problems (push still works)
    assert main(["validate", str(root)]) == 1  # an exact copy across splits fails by default
    captured = capsys.readouterr()
    assert "leak across splits as exact copies" in captured.err
    assert main(["validate", str(root), "--allow-split-leakage"]) == 0
    out = capsys.readouterr().out
    assert "5 group(s) among 14 images" in out and "2 leak across splits" in out
    assert "leakage across splits test/train" in out and "conflicting labels pair/target" in out
    assert main(["validate", str(root), "--duplicates", "fail"]) == 1
    assert "dataigm dedup" in capsys.readouterr().err
    assert main(["validate", str(root), "--duplicates", "off"]) == 0  # off: no duplicate check, leakage included
    assert "group(s)" not in capsys.readouterr().out


def _keys_by_split(root: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for sample in iter_samples(root, checksum=True):
        out.setdefault(sample.record["split"], set()).add(sample.key.split("_", 1)[1])
    return out


def test_dedup_writes_a_revision_without_duplicates(tmp_path, capsys):
    from datasets import load_dataset

    root = _write_root(tmp_path / "root")
    before = {rel: e["sha256"] for rel, e in read_manifest(root)["shards"].items()}
    assert main(["dedup", str(root)]) == 0
    assert "6 sample(s) dropped" in capsys.readouterr().out
    # the test copies stay, one copy of the others stays (real before laion), a conflict leaves whole
    kept = _keys_by_split(root)
    assert kept == {"train": {"a1", "d1", "f1", "g1", "g2"}, "test": {"b2", "c2", "f2"}}
    assert validate_root(root) == []
    assert find_duplicates(root).groups == []
    manifest = read_manifest(root)
    after = {rel: e["sha256"] for rel, e in manifest["shards"].items()}
    unchanged = set(before) & set(after)
    assert unchanged and all(before[r] == after[r] for r in unchanged)  # shards are never rewritten in place
    for old in set(before) - set(after):
        assert not (root / old).exists()
        retired = json.loads((root / ShardId.parse(old).sidecar_relpath).read_text())
        assert retired["count"] == 0 and retired["revision"] == manifest["revisions"][0]["id"]
    assert [r["status"] for r in manifest["revisions"]] == ["done"]
    ds = load_dataset(str(root))  # the Hugging Face view reads the new revision only
    assert {split: {k.split("_", 1)[1] for k in ds[split]["__key__"]} for split in ds} == kept
    # run again: nothing left to drop, nothing written
    assert main(["dedup", str(root)]) == 0
    assert "no duplicates to drop" in capsys.readouterr().out
    assert read_manifest(root)["shards"] == manifest["shards"]


def test_dedup_dry_run_writes_nothing(tmp_path, capsys):
    root = _write_root(tmp_path / "root")
    files = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts}
    assert main(["dedup", str(root), "--dry-run"]) == 0
    assert "6 sample(s) in" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts} == files


def test_keep_rules_choose_the_copy_that_stays(tmp_path):
    root = _write_root(tmp_path / "root")
    dedup_root(root, keep_splits=["train"], keep_sources=["laion"], conflicts="keep-one")
    kept = _keys_by_split(root)
    assert kept["train"] >= {"b1", "c1", "d2"} and not kept["train"] & {"d1"}
    assert {"b2", "c2"}.isdisjoint(kept["test"])
    assert len(kept["train"] & {"e1", "e2"}) == 1


def test_a_finished_ingest_run_again_after_dedup_does_not_bring_duplicates_back(tmp_path):
    folder = tmp_path / "images"
    for label in ("church", "other"):
        (folder / label).mkdir(parents=True)
    for i in range(6):
        (folder / "church" / f"c{i}.png").write_bytes(_encode(_noise(i)))
        (folder / "other" / f"o{i}.png").write_bytes(_encode(_noise(100 + i)))
    shutil.copyfile(folder / "church" / "c0.png", folder / "church" / "c0-again.png")
    root = tmp_path / "root"
    options = {"concept": "church", "class_names": {"other": "pair"}, "samples_per_shard": 5, "progress": False}
    ingest_folder(folder, root, **options)
    result = dedup_root(root)
    assert sum(len(k) for k in result.drop.values()) == 1
    shards = dict(read_manifest(root)["shards"])
    report = ingest_folder(folder, root, **options)
    assert report.shards_written == 0 and report.samples == 0
    assert read_manifest(root)["shards"] == shards
    assert validate_root(root) == [] and find_duplicates(root).groups == []


def test_balance_keeps_as_many_targets_as_pairs(tmp_path):
    layout = {f"t{i}": ("train", "real", "target", str(10 + i)) for i in range(7)}
    layout |= {f"p{i}": ("train", "real", "pair", str(30 + i)) for i in range(3)}
    layout |= {f"x{i}": ("test", "laion", "target" if i < 2 else "pair", str(50 + i)) for i in range(5)}
    root = _write_root(tmp_path / "root", layout)
    drop = choose_balance(root)
    assert drop == choose_balance(root)  # a stable choice
    summary = balance_root(root)
    assert summary.dropped == 5
    counts: dict = {}
    for sample in iter_samples(root):
        key = (sample.record["split"], sample.record["label"])
        counts[key] = counts.get(key, 0) + 1
    assert counts == {("train", "target"): 3, ("train", "pair"): 3, ("test", "target"): 2, ("test", "pair"): 2}
    assert validate_root(root) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["dedup", "{tmp}/nowhere"], "is not a dataigm dataset: dataigm.json is missing"),
        (
            ["dedup", "{root}", "--near-distance", "40"],
            "--near-distance must be between 0 and 32 bits (of 64), got 40",
        ),
        (["validate", "{root}", "--duplicates", "maybe"], "'report', 'fail', 'off']. Got value: maybe"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    root = _write_root(tmp_path / "root")
    files = sorted(p.relative_to(root) for p in root.rglob("*"))
    try:
        code = main([a.format(tmp=tmp_path, root=root) for a in argv])
    except SystemExit as exit:  # options that do not parse
        code = exit.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == files
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.slow
def test_dedup_killed_mid_revision_finishes_when_run_again(tmp_path):
    layout = {f"n{i}": ("train", "real", "target" if i % 2 else "pair", str(i)) for i in range(12)}
    layout |= {f"m{i}": ("test", "real", "target" if i % 2 else "pair", str(i)) for i in range(0, 12, 2)}
    root = _write_root(tmp_path / "root", layout)  # train shards 0..2 each leak into test
    clean = tmp_path / "clean"
    shutil.copytree(root, clean)
    dedup_root(clean)
    before = read_manifest(root)["shards"]
    done = kill_mid_run(["dedup", str(root)], root, pause_after=len(list((root / "data").rglob("*.tar"))) + 1)
    assert done >= 1
    for relpath, entry in before.items():  # killed while writing the copies: every old shard is still whole
        assert hashlib.sha256((root / relpath).read_bytes()).hexdigest() == entry["sha256"]
    problems = validate_root(root)
    assert any("revision dedup-" in p and "is unfinished" in p for p in problems), problems
    assert main(["dedup", str(root)]) == 0
    assert validate_root(root) == []
    assert _keys_by_split(root) == _keys_by_split(clean)
    assert read_manifest(root)["shards"] == read_manifest(clean)["shards"]
    for relpath in read_manifest(root)["shards"]:
        assert (root / relpath).read_bytes() == (clean / relpath).read_bytes()


def _damage(root: Path, relpath: str, how: str) -> None:
    tar = root / relpath
    if how == "missing":
        tar.unlink()
    elif how == "truncated":
        tar.write_bytes(tar.read_bytes()[:-700])
    else:  # the same size, one image byte changed: only the checksum tells
        data = bytearray(tar.read_bytes())
        data[len(data) // 2] ^= 0xFF
        tar.write_bytes(bytes(data))


def _files(root: Path) -> dict[Path, bytes]:
    """Every file of the root but the hash cache (which a dedup may fill)."""
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts}


@pytest.mark.parametrize("how", ["missing", "truncated", "corrupted"])
@pytest.mark.parametrize(
    "relpath",
    ["data/church/train/real-00000.tar", "data/church/test/real-00000.tar"],  # holds copies to drop / holds none
)
def test_dedup_on_a_damaged_shard_refuses_in_one_line_and_leaves_the_root_as_it_was(tmp_path, capsys, relpath, how):
    root = _write_root(tmp_path / "root")
    find_duplicates(root)  # as `dataigm validate` does: the hashes are cached, dedup does not decode the shards again
    _damage(root, relpath, how)
    before = _files(root)
    for argv in (["dedup", str(root)], ["dedup", str(root), "--dry-run"], ["dedup", str(root), "--balance", "split"]):
        assert main(argv) == 2
        captured = capsys.readouterr()
        err = captured.err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(f"dataigm dedup: error: {relpath}: "), err
        assert f"`dataigm validate {root}`" in err and "nothing was written" in err
        assert _files(root) == before  # no revision recorded: validate does not send the user back to dedup
    assert "revisions" not in read_manifest(root)
    assert not any("dedup" in p for p in validate_root(root))


def test_balance_on_a_damaged_shard_refuses_before_recording_anything(tmp_path):
    layout = {f"t{i}": ("train", "real", "target", str(10 + i)) for i in range(7)}
    layout |= {f"p{i}": ("train", "real", "pair", str(30 + i)) for i in range(3)}
    root = _write_root(tmp_path / "root", layout)
    _damage(root, "data/church/train/real-00001.tar", "corrupted")
    before = _files(root)
    with pytest.raises(ValueError, match=r"^data/church/train/real-00001.tar: sha256 does not match"):
        balance_root(root)
    assert _files(root) == before
