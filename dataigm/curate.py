"""Labels a person has checked, written as a new revision of the shards that hold them (``dataigm curate apply``).

The decisions come from ``dataigm review`` (:mod:`dataigm.review.decisions`): ``flip`` swaps an image's label,
``keep`` confirms it, ``skip`` leaves it alone. Each changed record gets ``label_source = "person"`` and
``previous_label``, the label it had before the decision; the revision's plan (``meta/revisions/<id>.json``,
``relabel``) keeps it too, next to the decision and the label source it replaced.

Shards are immutable, so the revision follows :mod:`dataigm.revision`: every affected shard is copied with the
new labels to a new shard number of its group (a done copy is skipped on a re-run), then the revision is entered
in the manifest and :func:`dataigm.revision.finish_revisions` swaps the copies in and retires the old shards.
Nothing is removed before every copy is complete; a run killed at any point is finished by running it again.
The manifest's revision entry holds ``labels_changed``: flips and confirmations per concept, source and method.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .files import atomic_write_json
from .layout import ShardId
from .manifest import read_manifest, reserve_shards, update_manifest
from .reader import index_shard, iter_shard, read_sidecar
from .review.decisions import Decisions, check_same_dataset, dataset_identity, read_decisions
from .revision import REVISIONS_DIR, finish_revisions, pending_revisions
from .sample import Sample
from .schema import LABELS, PERSON, SCHEMA_VERSION
from .validate import finish_command
from .writer import shard_is_done, write_shard

logger = logging.getLogger(__name__)

REASON = "curate"
NO_METHOD = "none"


@dataclass
class CurationSummary:
    """What applying a decisions file did (or found done already)."""

    revision: str
    flipped: int = 0
    confirmed: int = 0
    unchanged: int = 0  # skipped, or kept where a person had set the label already
    replaced: dict[str, str] = field(default_factory=dict)
    labels_changed: list[dict] = field(default_factory=list)
    state: str = "applied"  # applied | resumed | already applied | nothing to change

    def text(self) -> str:
        if self.state == "nothing to change":
            return f"nothing to change: {self.unchanged} decision(s) skip an image or keep a label a person set"
        return (
            f"revision {self.revision} ({self.state}): {self.flipped} label(s) flipped, {self.confirmed} confirmed, "
            f"{self.unchanged} unchanged; {len(self.replaced)} shard(s) replaced by a relabelled copy"
        )


def revision_id(decisions: Decisions) -> str:
    """Named by its content: the dataset state the decisions were made on and every image's last decision."""
    digest = hashlib.sha256(str(decisions.dataset.get("manifest_sha256")).encode())
    for uid in sorted(decisions.latest):
        d = decisions.latest[uid]
        digest.update(f"\n{uid}:{d['sha256']}:{d['label']}:{d['decision']}".encode())
    return f"{REASON}-{digest.hexdigest()[:16]}"


def _relabel_plan(root: Path, decisions: Decisions, path: Path) -> tuple[dict[str, dict[str, dict]], int]:
    """``{shard: {key: {"previous", "label", "decision"}}}`` of the records to rewrite, and how many stay as they are.

    Raises:
        ValueError: a decision names an image the root does not hold, or one whose bytes or label changed since.
    """
    indexed = read_manifest(root)["shards"]
    relabel: dict[str, dict[str, dict]] = {}
    unchanged = 0
    samples: dict[str, dict] = {}
    for uid, d in decisions.latest.items():
        shard, key = d["shard"], d["key"]
        if shard not in indexed:
            raise ValueError(
                f"{path} decides on {uid}, but {root} has no shard {shard} (decisions for another dataset, or "
                "the shard was replaced by a later revision); nothing was written"
            )
        if shard not in samples:
            samples[shard] = {s.key: s for s in index_shard(root / shard)}
        sample = samples[shard].get(key)
        if sample is None or sample.record["sha256"] != d["sha256"]:
            what = "no such image" if sample is None else "its image bytes differ"
            raise ValueError(
                f"{path} decides on {uid}: {what} in {root} (decisions for another dataset); nothing was written"
            )
        if LABELS[sample.cls] != d["label"]:
            raise ValueError(
                f"{path} decides on {uid} whose label was {d['label']!r}, but it is {LABELS[sample.cls]!r} in {root} "
                "now (relabelled since the review); nothing was written"
            )
        if d["decision"] == "skip" or (d["decision"] == "keep" and sample.record.get("label_source") == PERSON):
            unchanged += 1
            continue
        new = LABELS[1 - sample.cls] if d["decision"] == "flip" else LABELS[sample.cls]
        change = {"previous": LABELS[sample.cls], "label": new, "decision": d["decision"]}
        change |= {"concept": sample.record["concept"], "source": sample.record["source"]}
        change["method"] = sample.record.get("method") or NO_METHOD
        change["previous_label_source"] = sample.record.get("label_source")
        relabel.setdefault(shard, {})[key] = change
    return relabel, unchanged


def labels_changed(relabel: dict[str, dict[str, dict]]) -> list[dict]:
    """Rows ``{concept, source, method, flipped, to_target, to_pair, confirmed}``, one per group with a change."""
    counts: dict[tuple[str, str, str], Counter] = {}
    for changes in relabel.values():
        for c in changes.values():
            row = counts.setdefault((c["concept"], c["source"], c["method"]), Counter())
            if c["decision"] == "flip":
                row["flipped"] += 1
                row["to_target" if c["label"] == "target" else "to_pair"] += 1
            else:
                row["confirmed"] += 1
    return [
        {"concept": k[0], "source": k[1], "method": k[2]}
        | {name: row[name] for name in ("flipped", "to_target", "to_pair", "confirmed")}
        for k, row in sorted(counts.items())
    ]


def _relabelled(sample: Sample, change: dict | None) -> Sample:
    if change is None:
        return sample
    cls = LABELS.index(change["label"])
    record = dict(sample.record, label=change["label"], label_source=PERSON, previous_label=change["previous"])
    return Sample(sample.key, sample.image, sample.ext, cls, record)


def _summary(plan: dict, state: str) -> CurationSummary:
    rows = plan["labels_changed"]
    return CurationSummary(
        plan["revision"],
        flipped=sum(r["flipped"] for r in rows),
        confirmed=sum(r["confirmed"] for r in rows),
        unchanged=plan["unchanged"],
        replaced=plan["replaced"],
        labels_changed=rows,
        state=state,
    )


def apply_decisions(root: str | Path, decisions_path: str | Path) -> CurationSummary:
    """Write the decisions of ``decisions_path`` as a new revision of ``root``; a second run finishes or reports it.

    Raises:
        ValueError: the decisions are for another dataset (or this one changed since the review), name images the
            root does not hold, or another revision is unfinished; nothing is written then.
    """
    root, path = Path(root), Path(decisions_path)
    decisions = read_decisions(path)
    manifest = read_manifest(root)
    revision = revision_id(decisions)
    plan_path = root / REVISIONS_DIR / f"{revision}.json"
    entry = next((e for e in manifest.get("revisions", []) if e["id"] == revision), None)
    if entry is not None:  # entered already: finished, or killed while swapping the shards in
        plan = json.loads(plan_path.read_text(encoding="utf-8"))
        if entry.get("status") == "done":
            return _summary(plan, "already applied")
        finish_revisions(root)
        return _summary(plan, "resumed")
    others = pending_revisions(root)
    if others:
        raise ValueError(
            f"{root} has an unfinished revision {others[0]['id']}; finish it first with "
            f"`{finish_command(root, others[0])}`; nothing was written"
        )
    resumed = revision in manifest["jobs"]  # a run killed while writing the copies: the manifest changed since
    identity = dataset_identity(root)
    if not resumed:
        check_same_dataset(decisions, identity, path, root)
    elif decisions.dataset.get("name") != identity["name"]:
        check_same_dataset(decisions, identity, path, root)
    if manifest["schema_version"] != SCHEMA_VERSION:
        raise ValueError(
            f"{root} holds schema version {manifest['schema_version']} records; curation writes version "
            f"{SCHEMA_VERSION} (write the dataset again with this dataigm first)"
        )
    relabel, unchanged = _relabel_plan(root, decisions, path)
    if not relabel:
        return CurationSummary("", unchanged=unchanged, state="nothing to change")
    groups: dict[str, list[str]] = {}
    for old in sorted(relabel):
        groups.setdefault(ShardId.parse(old).group, []).append(old)
    replaced = {}
    for group, olds in groups.items():
        start = reserve_shards(
            root, revision, group, len(olds), description="curate revision (labels checked by a person)"
        )
        for offset, old in enumerate(olds):
            replaced[old] = ShardId(*group.split("/"), start + offset).relpath
    plan = {
        "revision": revision,
        "reason": REASON,
        "rules": {"decisions": str(path), "dataset": decisions.dataset, "queue": decisions.header.get("queue")},
        "drop": {},  # dataigm.revision's plan: nothing dropped, every record kept (some relabelled)
        "replaced": replaced,
        "relabel": relabel,
        "labels_changed": labels_changed(relabel),
        "unchanged": unchanged,
    }
    atomic_write_json(plan_path, plan)
    for old, new in replaced.items():
        shard = ShardId.parse(new)
        if shard_is_done(root, shard):  # written by a run that was killed later
            continue
        samples = [_relabelled(s, relabel[old].get(s.key)) for s in iter_shard(root / old)]
        errors = read_sidecar(root, ShardId.parse(old)).get("errors", [])
        write_shard(root, shard, samples, job_id=revision, errors=errors)
        logger.info("%s -> %s (%d label(s) changed)", old, new, len(relabel[old]))

    def enter(manifest: dict) -> None:
        entries = manifest.setdefault("revisions", [])
        if not any(e["id"] == revision for e in entries):
            entries.append(
                {
                    "id": revision,
                    "reason": REASON,
                    "status": "writing",
                    "plan": f"{REVISIONS_DIR}/{revision}.json",
                    "labels_changed": plan["labels_changed"],
                }
            )

    update_manifest(root, enter)
    finish_revisions(root)  # every copy is complete: swap them in, retire the old shards
    return _summary(plan, "resumed" if resumed else "applied")
