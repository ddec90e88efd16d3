import io
import json
import tarfile

import numpy as np
import pytest
from helpers.data import make_sample, write_test_root
from PIL import Image

from dataigm import SchemaError, ShardError, ShardId, iter_samples, iter_shard, read_manifest, write_shard
from dataigm.manifest import open_root, register_concepts, reserve_shards
from dataigm.writer import shard_is_done

LAYOUT = {("church", "train", "real"): [3, 2], ("nudity", "test", "generated"): [4]}


def _tree_bytes(root):
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix == ".tar"
    }


def test_samples_round_trip_with_decoded_pixels(tmp_path):
    root = write_test_root(tmp_path / "r", LAYOUT)
    samples = list(iter_samples(root, checksum=True))
    assert len(samples) == 9
    expected = make_sample("church", "train", "real", 3, label="pair")
    got = next(s for s in samples if s.key == expected.key)
    assert np.array_equal(np.asarray(got.decode()), np.asarray(Image.open(io.BytesIO(expected.image)).convert("RGB")))
    assert got.cls == 0 and got.record["label"] == "pair" and got.record["sha256"]
    assert [s.key for s in iter_samples(root, concept="nudity")] == [s.key for s in samples[5:]]


def test_same_job_writes_byte_identical_shards(tmp_path):
    first = _tree_bytes(write_test_root(tmp_path / "a", LAYOUT))
    second = _tree_bytes(write_test_root(tmp_path / "b", LAYOUT))
    assert first == second and len(first) == 3


def test_members_have_fixed_mtime_and_dot_free_keys(small_root):
    for path in sorted((small_root / "data").rglob("*.tar")):
        with tarfile.open(path) as tar:
            members = tar.getmembers()
        assert {m.mtime for m in members} == {0}
        keys = [m.name.split(".", 1)[0] for m in members]
        assert all(m.name.count(".") == 1 for m in members)
        assert len(set(keys)) == len(members) // 3


def test_sidecar_and_manifest_describe_the_shard(small_root):
    sidecar = json.loads((small_root / "meta/church/train/real-00000.json").read_text())
    assert sidecar["count"] == 4 and sidecar["labels"] == {"pair": 2, "target": 2}
    manifest = read_manifest(small_root)
    assert manifest["shards"]["data/church/train/real-00000.tar"]["sha256"] == sidecar["sha256"]
    assert list(manifest["concepts"]) == ["church", "nudity"]


def test_bad_record_writes_nothing(tmp_path):
    root = write_test_root(tmp_path / "r", {("church", "train", "real"): [1]})
    bad = make_sample("church", "train", "real", 5, label="target")
    bad.record["source"] = "laion"
    shard = ShardId("church", "train", "real", 1)
    with pytest.raises(SchemaError, match="source='laion' but shard data/church/train/real-00001.tar is for 'real'"):
        write_shard(root, shard, [make_sample("church", "train", "real", 4), bad])
    assert not (root / shard.relpath).exists() and not (root / shard.sidecar_relpath).exists()


def test_duplicate_key_in_a_shard_is_refused(tmp_path):
    root = write_test_root(tmp_path / "r", {("church", "train", "real"): [1]})
    sample = make_sample("church", "train", "real", 9)
    with pytest.raises(SchemaError, match="Duplicate sample key"):
        write_shard(root, ShardId("church", "train", "real", 3), [sample, sample])


def test_truncated_tar_is_named(small_root):
    path = small_root / "data/church/train/real-00000.tar"
    path.write_bytes(path.read_bytes()[:700])
    with pytest.raises(ShardError, match="real-00000.tar"):
        list(iter_shard(path))
    with pytest.raises(ShardError, match="real-00000.tar: .* bytes but its sidecar says"):
        list(iter_samples(small_root))
    assert not shard_is_done(small_root, ShardId("church", "train", "real", 0))


def test_corrupted_tar_fails_the_checksum(small_root):
    path = small_root / "data/church/train/real-00000.tar"
    data = bytearray(path.read_bytes())
    data[600] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="sha256 does not match"):
        list(iter_samples(small_root, checksum=True))


def test_missing_sidecar_means_unfinished(small_root):
    (small_root / "meta/nudity/test/generated-00000.json").unlink()
    assert not shard_is_done(small_root, ShardId("nudity", "test", "generated", 0))
    with pytest.raises(ShardError, match="generated-00000.tar: sidecar .* is missing"):
        list(iter_samples(small_root, concept="nudity"))


def test_jobs_reserve_disjoint_shard_ranges(tmp_path):
    root = tmp_path / "r"
    open_root(root)
    assert reserve_shards(root, "job-a", "church/train/real", 3) == 0
    assert reserve_shards(root, "job-b", "church/train/real", 2) == 3
    assert reserve_shards(root, "job-a", "church/train/real", 3) == 0  # a re-run finds its own range
    assert reserve_shards(root, "job-b", "church/test/real", 1) == 0
    with pytest.raises(ValueError, match="reserved 3 shards .* now plans 4"):
        reserve_shards(root, "job-a", "church/train/real", 4)


def test_root_with_another_dataset_is_refused(tmp_path):
    root = tmp_path / "r"
    open_root(root, name="mine")
    with pytest.raises(ValueError, match="holds a different dataset: its manifest has name='mine'"):
        open_root(root, name="theirs")
    other = tmp_path / "other"
    other.mkdir()
    (other / "dataigm.json").write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="not a dataigm manifest"):
        open_root(other)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "photos").mkdir()
    with pytest.raises(ValueError, match="not empty and has no dataigm.json .*photos"):
        open_root(busy)
    assert not (busy / "dataigm.json").exists()


def test_concept_whose_labels_changed_is_refused(tmp_path):
    from dataigm import Concept

    root = write_test_root(tmp_path / "r", {("church", "train", "real"): [1]})
    changed = Concept("church", "Church", "local/concrete/entity", "chapel", "other", ("church",))
    with pytest.raises(ValueError, match="target_class: dataset 'church' vs registry 'chapel'"):
        register_concepts(root, [changed])


def test_shard_done_but_missing_from_manifest_is_entered_on_resume(small_root):
    from dataigm.manifest import update_manifest
    from dataigm.writer import done_shards

    shard = ShardId("church", "train", "real", 1)
    update_manifest(small_root, lambda m: m["shards"].pop(shard.relpath))  # killed before the manifest update
    assert done_shards(small_root, [shard, ShardId("church", "train", "real", 2)]) == {shard}
    assert shard.relpath in read_manifest(small_root)["shards"]


def test_index_gives_offsets_of_the_same_image_bytes(small_root):
    from dataigm.reader import index_shard

    path = small_root / "data/church/train/real-00000.tar"
    indexed = index_shard(path)
    streamed = list(iter_shard(path))
    assert [s.key for s in indexed] == [s.key for s in streamed]
    with open(path, "rb") as f:
        for entry, sample in zip(indexed, streamed, strict=True):
            f.seek(entry.offset)
            assert f.read(entry.size) == sample.image
            assert (entry.ext, entry.cls, entry.record) == (sample.ext, sample.cls, sample.record)
