"""``dataigm validate``: check a dataset root end to end and list every problem found."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from .files import sha256_bytes
from .layout import ShardId, shard_files, temporary_files
from .manifest import read_manifest
from .reader import ShardError, check_shard, iter_shard
from .schema import LABELS, SchemaError, validate_record
from .writer import is_empty_sidecar


def validate_root(root: str | Path) -> list[str]:
    """Every problem in ``root``: manifest, sidecars, checksums, schema, counts, duplicate keys, splits
    without data, unfinished jobs (shard numbers a job reserved but did not write) and unfinished revisions.

    Duplicate images are not problems of the root's integrity: :func:`dataigm.duplicates.find_duplicates`
    reports them (``dataigm validate`` prints both).

    Returns:
        Human-readable problems, each naming the file (and sample) concerned; empty when valid.
    """
    root = Path(root)
    try:
        manifest = read_manifest(root)
    except ValueError as err:
        return [str(err)]
    concepts = {cid: c["category"] for cid, c in manifest["concepts"].items()}
    problems: list[str] = []
    first_seen: dict[str, str] = {}
    on_disk: set[str] = set()
    per_split: dict[tuple[str, str], int] = {}
    for path in shard_files(root):
        relpath = path.relative_to(root).as_posix()
        on_disk.add(relpath)
        try:
            shard = ShardId.parse(relpath)
            sidecar = check_shard(root, shard, checksum=True)
        except (ValueError, ShardError) as err:
            problems.append(str(err))
            continue
        problems += _check_samples(root, shard, sidecar, concepts, first_seen)
        key = (shard.concept, shard.split)
        per_split[key] = per_split.get(key, 0) + (sidecar.get("count") or 0)
        indexed = manifest["shards"].get(relpath)
        if indexed is None or indexed.get("sha256") != sidecar.get("sha256"):
            problems.append(f"{relpath}: not in the manifest's shard index, or listed with another checksum")
    for relpath in sorted(set(manifest["shards"]) - on_disk):
        problems.append(f"{relpath}: listed in the manifest but missing on disk")
    for sidecar_path in sorted((root / "meta").glob("*/*/*.json")):
        tar = "data/" + sidecar_path.relative_to(root / "meta").with_suffix(".tar").as_posix()
        if tar not in on_disk and not _empty_shard(sidecar_path):
            problems.append(f"{sidecar_path.relative_to(root).as_posix()}: sidecar without its shard {tar}")
    for tmp in temporary_files(root):
        problems.append(f"{tmp.relative_to(root).as_posix()}: temporary file of an interrupted job (re-run the job)")
    for (concept, split), n in sorted(per_split.items()):
        if n == 0:
            problems.append(
                f"{concept}/{split}: its shards hold no samples (load_dataset fails on a split without data)"
            )
    problems += _unfinished_jobs(root, manifest)
    for revision in manifest.get("revisions", []):
        if revision.get("status") != "done":
            problems.append(
                f"revision {revision['id']} ({revision.get('reason')}) is unfinished ({revision.get('status')}): "
                f"run `{finish_command(root, revision)}` to finish it"
            )
    return problems


def finish_command(root: Path, revision: dict) -> str:
    """The command that finishes an unfinished ``revision`` of the manifest: the one that started it.

    A curate revision is named by its decisions (``dataigm curate apply`` with the file its plan names); dedup and
    balance revisions are finished by ``dataigm dedup``, which finishes any pending revision first.
    """
    if revision.get("reason") != "curate":  # dataigm.curate.REASON
        return f"dataigm dedup {root}"
    try:
        decisions = json.loads((Path(root) / revision["plan"]).read_text(encoding="utf-8"))["rules"]["decisions"]
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        decisions = "FILE"  # the plan is unreadable: the person knows which file they applied
    return f"dataigm curate apply {root} --decisions {decisions}"


def _empty_shard(sidecar_path: Path) -> bool:
    try:
        return is_empty_sidecar(json.loads(sidecar_path.read_text(encoding="utf-8")))
    except json.JSONDecodeError:
        return False


def _unfinished_jobs(root: Path, manifest: dict) -> list[str]:
    """One problem per job whose reserved shard numbers are not all written (a killed or failed run)."""
    problems = []
    for job_id, job in manifest["jobs"].items():
        missing, reserved = [], 0
        for group, (start, count) in sorted(job.get("ranges", {}).items()):
            reserved += count
            try:
                shards = [ShardId(*group.split("/"), index) for index in range(start, start + count)]
            except (TypeError, ValueError):
                problems.append(f"job {job_id}: reserved shards in an invalid group {group!r}")
                continue
            missing += [
                s.relpath
                for s in shards
                if not (root / s.relpath).exists() and not (root / s.sidecar_relpath).exists()
            ]
        if missing:
            listed = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
            description = job.get("description") or "no description"
            problems.append(
                f"job {job_id} ({description}) is unfinished: {len(missing)} of its {reserved} reserved shard(s) "
                f"are missing ({listed}); re-run the same command to finish it"
            )
    return problems


def _check_samples(root: Path, shard: ShardId, sidecar: dict, concepts: dict, first_seen: dict[str, str]) -> list[str]:
    problems = []
    labels: Counter = Counter()
    count = 0
    try:
        for sample in iter_shard(root / shard.relpath):
            count += 1
            where = f"{shard.relpath}: sample {sample.key!r}"
            if sample.key in first_seen:
                problems.append(f"{where}: duplicate key (also in {first_seen[sample.key]})")
            else:
                first_seen[sample.key] = shard.relpath
            try:
                validate_record(sample.record, cls=sample.cls, concepts=concepts)
            except SchemaError as err:
                problems.append(f"{where}: {err}")
                continue
            labels[LABELS[sample.cls]] += 1
            if sample.record["sha256"] != sha256_bytes(sample.image):
                problems.append(f"{where}: image bytes do not match the record's sha256")
            for name in ("concept", "split", "source"):
                if sample.record[name] != getattr(shard, name):
                    problems.append(f"{where}: {name}={sample.record[name]!r} does not match the shard's folder")
    except ShardError as err:
        return [*problems, str(err)]
    if count != sidecar.get("count"):
        problems.append(f"{shard.relpath}: {count} samples but its sidecar says {sidecar.get('count')}")
    if dict(labels) != sidecar.get("labels"):
        problems.append(
            f"{shard.relpath}: label counts {dict(labels)} differ from its sidecar {sidecar.get('labels')}"
        )
    return problems
