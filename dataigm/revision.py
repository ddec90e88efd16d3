"""A new revision of a dataset root without some samples (dedup, balance), written without touching a shard.

Shards are immutable. A revision copies each affected shard, less the dropped samples, to a new shard number
of the same group, then swaps them in the manifest, then retires the old shards. In that order, so that
nothing is deleted before every new shard is complete:

1. **plan**: the dropped keys per shard and each old shard's replacement are saved in
   ``meta/revisions/<id>.json``, and the revision is entered in the manifest (``revisions``, status ``writing``);
   the new shard numbers are reserved like any job's.
2. **write**: each replacement shard is written (a done one is skipped, as in every job).
3. **switch**: one manifest update drops the old shards from the index (status ``retiring``); the
   ``README.md`` configs are rewritten.
4. **retire**: each old shard's sidecar becomes an empty one that names its replacement (``replaced_by``),
   then its tar is removed (status ``done``). The retired sidecar keeps the job that wrote the old shard
   finished: running that job again does not bring the dropped samples back.

A revision killed at any step is finished by :func:`finish_revisions` (``dataigm dedup`` calls it first).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .dataset_readme import write_dataset_readme
from .files import atomic_write_json
from .layout import META_DIR, ShardId
from .manifest import read_manifest, reserve_shards, update_manifest
from .reader import ShardError, check_shard, iter_shard, read_sidecar
from .writer import shard_is_done, write_shard

logger = logging.getLogger(__name__)

REVISIONS_DIR = f"{META_DIR}/revisions"


@dataclass
class RevisionSummary:
    """What a revision did: samples dropped, shards replaced by a smaller copy or retired without one."""

    revision: str
    reason: str
    dropped: int = 0
    replaced: dict[str, str | None] = field(default_factory=dict)  # old shard -> new shard (None: all dropped)
    resumed: bool = False

    def text(self, note_resumed: bool = True) -> str:
        """One line; ``note_resumed=False`` leaves out that an interrupted run was finished (a build's record of
        the step is what it wrote, the same as an uninterrupted run's)."""
        if not self.revision:
            if self.dropped:  # a dry run
                return f"{self.reason}: {self.dropped} sample(s) would be dropped (nothing written)"
            return f"{self.reason}: nothing to drop"
        kept = sum(v is not None for v in self.replaced.values())
        again = " (finished an interrupted run)" if self.resumed and note_resumed else ""
        return (
            f"revision {self.revision} ({self.reason}){again}: {self.dropped} sample(s) dropped, "
            f"{len(self.replaced)} shard(s) replaced ({kept} by a smaller copy, {len(self.replaced) - kept} "
            "retired without one)"
        )


def check_indexed_shards(root: str | Path) -> None:
    """Check every shard of the index against its sidecar and the index (on disk, size, sha256).

    A revision reads the shards it rewrites, and dedup or balance trust hashes cached by a shard's checksum, so a
    missing or damaged shard found only while the revision is written would leave a recorded, unfinishable one.
    Dedup and balance call this first: a damaged root is refused before anything is recorded.

    Raises:
        ValueError: one line naming the first missing or damaged shard and how many there are.
    """
    root = Path(root)
    problems = []
    for relpath, entry in sorted(read_manifest(root)["shards"].items()):
        try:
            sidecar = check_shard(root, ShardId.parse(relpath), checksum=True)
        except FileNotFoundError:
            problems.append(f"{relpath}: missing on disk")
            continue
        except (ShardError, ValueError, OSError) as err:
            problems.append(str(err).removeprefix(f"{root}/"))
            continue
        if sidecar.get("sha256") != entry.get("sha256"):
            problems.append(f"{relpath}: its sidecar's checksum is not the one in the manifest's index")
    if problems:
        more = f" (and {len(problems) - 1} more shard(s))" if len(problems) > 1 else ""
        raise ValueError(
            f"{problems[0]}{more}; nothing was written: restore the shard, `dataigm validate {root}` lists "
            "every problem"
        )


def pending_revisions(root: str | Path) -> list[dict]:
    """The manifest entries of revisions that a killed run left unfinished."""
    return [r for r in read_manifest(root).get("revisions", []) if r.get("status") != "done"]


def _revision_id(root: Path, reason: str, drop: Mapping[str, set[str]]) -> str:
    """Named by its content: which keys leave which shard (by the shard's checksum), and why."""
    indexed = read_manifest(root)["shards"]
    digest = hashlib.sha256(reason.encode())
    for relpath in sorted(drop):
        digest.update(f"\n{relpath}:{indexed[relpath]['sha256']}:{','.join(sorted(drop[relpath]))}".encode())
    return f"{reason}-{digest.hexdigest()[:16]}"


def drop_samples(
    root: str | Path, drop: Mapping[str, set[str]], reason: str, rules: dict | None = None
) -> RevisionSummary:
    """Write a new revision of ``root`` without the samples ``{shard relpath: {key, ...}}``.

    Args:
        root: the dataset root (no unfinished revision in it: see :func:`finish_revisions`).
        drop: the keys to leave out, per shard in the manifest's index.
        reason: a short word for the revision's id and the manifest (``dedup``, ``balance``).
        rules: the options that chose the samples, kept in the revision's plan.

    Raises:
        ValueError: an unfinished revision is pending, a shard is not in the index, or a key is not in its shard.
    """
    root = Path(root)
    if pending_revisions(root):
        raise ValueError(f"{root} has an unfinished revision; finish it first (run `dataigm dedup {root}` again)")
    drop = {relpath: set(keys) for relpath, keys in drop.items() if keys}
    indexed = read_manifest(root)["shards"]
    unknown = sorted(set(drop) - set(indexed))
    if unknown:
        raise ValueError(f"Cannot drop samples from {unknown[0]}: not a shard of {root}'s index")
    if not drop:
        return RevisionSummary("", reason)
    revision = _revision_id(root, reason, drop)
    replaced: dict[str, str | None] = {}
    groups: dict[str, list[str]] = {}
    for relpath in sorted(drop):
        count = indexed[relpath]["count"]
        if len(drop[relpath]) > count:
            raise ValueError(f"{relpath}: {len(drop[relpath])} keys to drop but the shard holds {count} samples")
        if len(drop[relpath]) < count:
            groups.setdefault(ShardId.parse(relpath).group, []).append(relpath)
        else:
            replaced[relpath] = None
    for group, olds in groups.items():
        start = reserve_shards(root, revision, group, len(olds), description=f"{reason} revision")
        for offset, old in enumerate(olds):
            replaced[old] = ShardId(*group.split("/"), start + offset).relpath
    plan = {
        "revision": revision,
        "reason": reason,
        "rules": rules or {},
        "drop": {k: sorted(v) for k, v in sorted(drop.items())},
        "replaced": dict(sorted(replaced.items())),
    }
    atomic_write_json(root / REVISIONS_DIR / f"{revision}.json", plan)

    def enter(manifest: dict) -> None:
        entries = manifest.setdefault("revisions", [])
        if not any(e["id"] == revision for e in entries):
            entries.append(
                {"id": revision, "reason": reason, "status": "writing", "plan": f"{REVISIONS_DIR}/{revision}.json"}
            )

    update_manifest(root, enter)
    return _finish(root, revision, resumed=False)


def finish_revisions(root: str | Path) -> list[RevisionSummary]:
    """Finish every revision a killed run left unfinished; returns their summaries."""
    return [_finish(Path(root), entry["id"], resumed=True) for entry in pending_revisions(root)]


def _set_status(root: Path, revision: str, status: str, **extra) -> None:
    def change(manifest: dict) -> None:
        for entry in manifest.get("revisions", []):
            if entry["id"] == revision:
                entry["status"] = status
                entry.update(extra)

    update_manifest(root, change)


def _finish(root: Path, revision: str, resumed: bool) -> RevisionSummary:
    plan = json.loads((root / REVISIONS_DIR / f"{revision}.json").read_text(encoding="utf-8"))
    entry = next(e for e in read_manifest(root)["revisions"] if e["id"] == revision)
    replaced: dict[str, str | None] = plan["replaced"]
    dropped = sum(len(keys) for keys in plan["drop"].values())
    if entry["status"] == "writing":
        for old, new in replaced.items():
            if new is None or shard_is_done(root, ShardId.parse(new)):
                continue
            keys = set(plan["drop"].get(old, []))
            samples = list(iter_shard(root / old))
            kept = [s for s in samples if s.key not in keys]
            missing = keys - {s.key for s in samples}
            if missing:
                raise ValueError(f"{old}: no sample {sorted(missing)[0]!r} to drop (the shard changed after planning)")
            errors = read_sidecar(root, ShardId.parse(old)).get("errors", [])
            write_shard(root, ShardId.parse(new), kept, job_id=revision, errors=errors)
            logger.info("%s -> %s (%d sample(s) kept)", old, new, len(kept))

        def switch(manifest: dict) -> None:
            for old in replaced:
                manifest["shards"].pop(old, None)
            for e in manifest["revisions"]:
                if e["id"] == revision:
                    e["status"] = "retiring"

        update_manifest(root, switch)
    if entry["status"] in ("writing", "retiring"):
        for old, new in replaced.items():
            shard = ShardId.parse(old)
            sidecar_path = root / shard.sidecar_relpath
            sidecar = json.loads(sidecar_path.read_text(encoding="utf-8")) if sidecar_path.exists() else {}
            if sidecar.get("revision") != revision:
                retired = {"shard": old, "count": 0, "size": 0, "sha256": None, "labels": {}}
                retired |= {"image_extensions": [], "first_key": None, "last_key": None, "job": sidecar.get("job")}
                retired |= {"errors": [], "replaced_by": new, "revision": revision}
                atomic_write_json(sidecar_path, retired)
            (root / old).unlink(missing_ok=True)
        write_dataset_readme(root)  # the configs list the splits that still have shards
        _set_status(root, revision, "done", dropped=dropped, replaced=len(replaced))
    return RevisionSummary(revision, plan["reason"], dropped, replaced, resumed)


def retired_shards(root: str | Path) -> dict[str, str | None]:
    """``{old shard: its replacement or None}`` of every finished or pending revision of ``root``."""
    root = Path(root)
    out: dict[str, str | None] = {}
    for entry in read_manifest(root).get("revisions", []):
        path = root / entry["plan"]
        if path.exists():
            out.update(json.loads(path.read_text(encoding="utf-8"))["replaced"])
    return out
