"""``dataigm curate apply``: a person's decisions become a new revision of the affected shards (labels flipped or
confirmed with ``label_source = "person"``, the previous label kept, counts in the manifest and the card), a killed
apply finishes on a re-run, and decisions for another dataset are refused with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.data import METHODS, make_sample, write_test_root

import dataigm.curate
from dataigm import ShardId, write_shard
from dataigm.cli import main
from dataigm.layout import MANIFEST_NAME
from dataigm.manifest import read_manifest
from dataigm.reader import iter_samples
from dataigm.review import DecisionLog, load_queue, write_queue
from dataigm.validate import validate_root

# (shard, key) -> decision; shard indexes as written by the fixture
DECISIONS = {
    ("data/church/test/real-00000.tar", "real_00001"): "flip",  # a pair becomes a target
    ("data/church/test/real-00000.tar", "real_00002"): "keep",
    ("data/church/test/real-00000.tar", "real_00003"): "skip",
    ("data/church/test/generated-00000.tar", "generated_00101"): "flip",  # method ESD, pair -> target
    ("data/church/test/generated-00000.tar", "generated_00102"): "flip",  # method FMN, target -> pair
}


def write_root(root: Path, extra: int = 0) -> Path:
    root = write_test_root(root, {("church", "test", "real"): [6, 3 + extra], ("church", "train", "real"): [4]})
    generated = [
        make_sample("church", "test", "generated", 100 + i, ("target", "pair")[i % 2], method=METHODS[i % 3])
        for i in range(6)
    ]
    write_shard(root, ShardId("church", "test", "generated", 0), generated, job_id="test")
    return root


def records(root: Path) -> dict[str, tuple[int, dict, bytes]]:
    return {s.key: (s.cls, s.record, s.image) for s in iter_samples(root)}


def review(root: Path, tmp_path: Path, decisions: dict = DECISIONS) -> Path:
    """The queue of ``decisions``' images, decided through the decisions log the page uses."""
    queue = write_queue([{"key": k, "shard": s, "judges": {}} for s, k in decisions], tmp_path / "queue.jsonl")
    log = DecisionLog(tmp_path / "decisions.jsonl", root, queue)
    for item in load_queue(root, queue):
        log.append(item, decisions[(item.shard, item.key)])
    return tmp_path / "decisions.jsonl"


@pytest.fixture
def root(tmp_path) -> Path:
    return write_root(tmp_path / "root")


def test_apply_writes_a_revision_with_the_decided_labels_and_nothing_else_changed(root, tmp_path, capsys):
    before = records(root)
    decisions = review(root, tmp_path)
    assert main(["curate", "apply", str(root), "--decisions", str(decisions)]) == 0
    after = records(root)
    assert set(after) == set(before)
    decided = {key: d for (_, key), d in DECISIONS.items()}
    for key, (cls, record, image) in after.items():
        old_cls, old_record, old_image = before[key]
        assert image == old_image
        if decided.get(key) == "flip":
            assert cls == 1 - old_cls and record["label"] == ("pair", "target")[cls]
            assert record["label_source"] == "person" and record["previous_label"] == old_record["label"]
        elif decided.get(key) == "keep":
            assert cls == old_cls
            assert record == dict(old_record, label_source="person", previous_label=old_record["label"])
        else:  # skipped or not queued: untouched
            assert (cls, record) == (old_cls, old_record)
    # the old shards are retired, the copies are indexed; the other shards are as they were
    manifest = read_manifest(root)
    assert "data/church/test/real-00000.tar" not in manifest["shards"]
    assert not (root / "data/church/test/real-00000.tar").exists()
    assert "data/church/test/real-00001.tar" in manifest["shards"]  # no decision there
    assert validate_root(root) == []
    # the manifest counts the changes per concept, source and method; the plan keeps each previous label
    (revision,) = manifest["revisions"]
    assert revision["reason"] == "curate" and revision["status"] == "done"
    rows = {(r["concept"], r["source"], r["method"]): r for r in revision["labels_changed"]}
    assert rows[("church", "real", "none")] == {
        "concept": "church", "source": "real", "method": "none", "flipped": 1, "to_target": 1, "to_pair": 0,
        "confirmed": 1,
    }  # fmt: skip
    assert rows[("church", "generated", "ESD")]["to_target"] == 1
    assert rows[("church", "generated", "FMN")]["to_pair"] == 1
    plan = json.loads((root / revision["plan"]).read_text())
    new_shard = plan["replaced"]["data/church/test/real-00000.tar"]
    assert new_shard.startswith("data/church/test/real-") and new_shard in manifest["shards"]
    change = plan["relabel"]["data/church/test/real-00000.tar"]["real_00001"]
    assert (change["previous"], change["label"], change["decision"]) == ("pair", "target", "flip")
    # the dataset card says it (the command refreshed it)
    card = (root / "README.md").read_text()
    assert "Labels checked by a person" in card and "| church | real | none | 1 | 1 | 0 | 1 |" in card
    out = capsys.readouterr().out
    assert "3 label(s) flipped, 1 confirmed, 1 unchanged; 2 shard(s) replaced" in out
    assert "church / generated / ESD: 1 flipped (1 to target, 0 to pair), 0 confirmed" in out
    # the HF view reads the new labels
    from datasets import load_dataset

    ds = load_dataset(str(root), split="test")
    labels = {row["__key__"]: row["cls"] for row in ds}
    assert labels["real_00001"] == 1 and labels["generated_00102"] == 0
    # ... and each record's previous label (a class id of json.label's names; null where no person decided)
    names = ds.features["json"]["previous_label"].names
    previous = {row["__key__"]: row["json"]["previous_label"] for row in ds}
    assert names == ["pair", "target"]
    assert (names[previous["real_00001"]], names[previous["generated_00102"]]) == ("pair", "target")
    assert names[previous["real_00002"]] == before["real_00002"][1]["label"]  # kept: the same label, confirmed
    assert previous["real_00003"] is None and previous["real_00004"] is None  # skipped; not queued


def test_a_second_apply_reports_it_done_and_changes_nothing(root, tmp_path, capsys):
    decisions = review(root, tmp_path)
    assert main(["curate", "apply", str(root), "--decisions", str(decisions)]) == 0
    manifest = (root / MANIFEST_NAME).read_bytes()
    assert main(["curate", "apply", str(root), "--decisions", str(decisions)]) == 0
    assert "already applied" in capsys.readouterr().out
    assert (root / MANIFEST_NAME).read_bytes() == manifest


@pytest.mark.parametrize("stop_at", ["second copy", "swap"])
def test_an_apply_killed_halfway_finishes_on_a_re_run(root, tmp_path, monkeypatch, stop_at):
    decisions = review(root, tmp_path)
    expected_tmp = tmp_path / "expected"
    reference = write_root(expected_tmp / "root")
    dataigm.curate.apply_decisions(reference, review(reference, expected_tmp))
    written = []
    real_write = dataigm.curate.write_shard

    def write_then_die(*args, **kwargs):  # the process dies where a kill would stop it
        if stop_at == "second copy" and written:
            raise KeyboardInterrupt
        written.append(real_write(*args, **kwargs))

    def die(root):
        raise KeyboardInterrupt

    monkeypatch.setattr(dataigm.curate, "write_shard", write_then_die)
    if stop_at == "swap":
        monkeypatch.setattr(dataigm.curate, "finish_revisions", die)
    with pytest.raises(KeyboardInterrupt):
        dataigm.curate.apply_decisions(root, decisions)
    assert (root / "data/church/test/real-00000.tar").exists()  # nothing retired before every copy is complete
    if stop_at == "swap":  # validate names the command that finishes it: this apply, not dedup
        finish = f"run `dataigm curate apply {root} --decisions {decisions}` to finish it"
        assert any(p.startswith("revision curate-") and p.endswith(finish) for p in validate_root(root))
    monkeypatch.undo()
    summary = dataigm.curate.apply_decisions(root, decisions)
    assert summary.state == "resumed" and summary.flipped == 3
    assert records(root) == records(reference)
    assert validate_root(root) == []


def test_decisions_for_another_dataset_are_refused_and_nothing_is_written(root, tmp_path, capsys):
    decisions = review(root, tmp_path)
    other = write_root(tmp_path / "other", extra=1)
    manifest = (other / MANIFEST_NAME).read_bytes()
    assert main(["curate", "apply", str(other), "--decisions", str(decisions)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dataigm curate apply: error:") and "another dataset" in err and err.count("\n") == 1
    assert (other / MANIFEST_NAME).read_bytes() == manifest and not (other / "meta" / "revisions").exists()


def test_a_root_changed_since_the_review_is_refused(root, tmp_path, capsys):
    decisions = review(root, tmp_path)
    write_shard(root, ShardId("church", "test", "real", 7), [make_sample("church", "test", "real", 500)], job_id="x")
    assert main(["curate", "apply", str(root), "--decisions", str(decisions)]) == 2
    assert "changed since the review" in capsys.readouterr().err
    assert "revisions" not in read_manifest(root)


def test_only_skips_change_nothing(root, tmp_path, capsys):
    decisions = review(root, tmp_path, {k: "skip" for k in DECISIONS})
    before = (root / MANIFEST_NAME).read_bytes()
    assert main(["curate", "apply", str(root), "--decisions", str(decisions)]) == 0
    assert "nothing to change" in capsys.readouterr().out
    assert (root / MANIFEST_NAME).read_bytes() == before


def test_a_file_that_is_not_a_decisions_file_is_refused(root, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"key": "x"}\n')
    assert main(["curate", "apply", str(root), "--decisions", str(bad)]) == 2
    assert "is not a decisions file" in capsys.readouterr().err


def test_a_root_of_an_older_schema_is_refused_and_nothing_is_written(tmp_path, capsys):
    """Copies of schema 3 next to older records would make the root's json ragged (load_dataset fails on it)."""
    from dataigm.manifest import update_manifest

    root = write_root(tmp_path / "root")
    update_manifest(root, lambda m: m.update(schema_version="2"))  # as a root written before previous_label
    decisions = review(root, tmp_path)
    shards = sorted(p.name for p in (root / "data").rglob("*.tar"))
    assert main(["curate", "apply", str(root), "--decisions", str(decisions)]) == 2
    err = capsys.readouterr().err
    assert "holds schema version 2 records; curation writes version 3" in err and err.count("\n") == 1
    assert sorted(p.name for p in (root / "data").rglob("*.tar")) == shards and "revisions" not in read_manifest(root)
