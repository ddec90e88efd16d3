"""Write samples into shards of a dataset root (docs/dataset-format.md).

A shard is validated in full, written to a temporary name, renamed when complete, then described by
its sidecar and entered in the manifest. A shard is *done* when its sidecar exists and matches the
tar, so a job killed at any moment redoes only unfinished shards.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from .files import atomic_write_json, sha256_bytes
from .layout import TMP_SUFFIX, ShardId
from .manifest import read_manifest, record_shard
from .sample import Sample
from .schema import LABELS, SchemaError, normalize_record, validate_record

logger = logging.getLogger(__name__)

SHARD_MTIME = 0  # fixed member mtime: the same job writes byte-identical shards


def _encode_json(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def prepare_sample(sample: Sample, shard: ShardId, concepts: dict[str, str]) -> Sample:
    """Complete and check a sample for ``shard``: schema order, sha256, and agreement with the path."""
    record = normalize_record(sample.record)
    digest = sha256_bytes(sample.image)
    if record["sha256"] is None:
        record["sha256"] = digest
    elif record["sha256"] != digest:
        raise SchemaError(f"Sample {sample.key!r}: record sha256 does not match the image bytes")
    try:
        validate_record(record, cls=sample.cls, concepts=concepts)
    except SchemaError as err:
        raise SchemaError(f"Sample {sample.key!r}: {err}") from None
    for name in ("concept", "split", "source"):
        if record[name] != getattr(shard, name):
            raise SchemaError(
                f"Sample {sample.key!r}: {name}={record[name]!r} but shard {shard.relpath} is for {getattr(shard, name)!r}"
            )
    return Sample(sample.key, sample.image, sample.ext, sample.cls, record)


def shard_is_done(root: str | Path, shard: ShardId) -> bool:
    """True when the shard's tar and sidecar both exist and the sidecar's size matches the tar."""
    root = Path(root)
    tar, sidecar = root / shard.relpath, root / shard.sidecar_relpath
    if not sidecar.exists():
        return False
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    if meta.get("shard") != shard.relpath:
        return False
    if not tar.exists():
        return is_empty_sidecar(meta)
    return meta.get("size") == tar.stat().st_size


def is_empty_sidecar(meta: dict) -> bool:
    """True for the sidecar of a shard whose inputs were all skipped: it has no tar (see :func:`write_shard`)."""
    return meta.get("count") == 0 and meta.get("size") == 0 and meta.get("sha256") is None


def done_shards(root: str | Path, shards: Iterable[ShardId]) -> set[ShardId]:
    """The finished shards among ``shards``, for a job that resumes.

    A job killed between a shard's sidecar and the manifest update leaves a done shard missing from
    the manifest's index; it is entered here, so the resumed job neither redoes nor loses it.
    """
    root = Path(root)
    indexed = read_manifest(root)["shards"]
    done = set()
    for shard in shards:
        if shard_is_done(root, shard):
            done.add(shard)
            if shard.relpath not in indexed and (root / shard.relpath).exists():
                record_shard(
                    root, shard.relpath, json.loads((root / shard.sidecar_relpath).read_text(encoding="utf-8"))
                )
    return done


def write_shard(
    root: str | Path,
    shard: ShardId,
    samples: Iterable[Sample],
    job_id: str | None = None,
    errors: list[dict] | None = None,
) -> dict:
    """Validate ``samples`` and write them as ``shard``; returns the sidecar.

    A shard without samples (every input of its chunk skipped) is written as its sidecar alone, with
    ``count`` 0 and the skipped inputs: no tar, because ``datasets`` cannot load a split whose tars are
    empty. The sidecar marks the shard done, so a resumed job does not redo it.

    Args:
        root: dataset root, opened with :func:`dataigm.manifest.open_root`.
        shard: where the shard goes.
        samples: the samples, written in the order given.
        job_id: the job that wrote the shard, recorded in the sidecar.
        errors: inputs that were skipped while building this shard (recorded in the sidecar).

    Raises:
        SchemaError: a sample breaks the schema or repeats a key; nothing is written then.
    """
    import webdataset as wds

    root = Path(root)
    concepts = {cid: c["category"] for cid, c in read_manifest(root)["concepts"].items()}
    prepared: list[Sample] = []
    seen: set[str] = set()
    for sample in samples:
        if sample.key in seen:
            raise SchemaError(f"Duplicate sample key {sample.key!r} in {shard.relpath}")
        seen.add(sample.key)
        prepared.append(prepare_sample(sample, shard, concepts))

    if not prepared:
        sidecar = {"shard": shard.relpath, "count": 0, "size": 0, "sha256": None, "labels": {}}
        sidecar |= {"image_extensions": [], "first_key": None, "last_key": None, "job": job_id, "errors": errors or []}
        atomic_write_json(root / shard.sidecar_relpath, sidecar)
        logger.debug("%s: no samples, sidecar only", shard.relpath)
        return sidecar

    buffer = io.BytesIO()
    with wds.TarWriter(buffer, encoder=False, mtime=SHARD_MTIME, user="dataigm", group="dataigm", mode=0o444) as sink:
        for s in prepared:
            sink.write({"__key__": s.key, s.ext: s.image, "cls": str(s.cls).encode(), "json": _encode_json(s.record)})
    data = buffer.getvalue()

    tar_path = root / shard.relpath
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    for stale in tar_path.parent.glob(f".{tar_path.name}.*{TMP_SUFFIX}"):  # left by a killed run of this shard
        stale.unlink(missing_ok=True)
    tmp = tar_path.with_name(f".{tar_path.name}.{os.getpid()}{TMP_SUFFIX}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, tar_path)

    sidecar = {
        "shard": shard.relpath,
        "count": len(prepared),
        "size": len(data),
        "sha256": sha256_bytes(data),
        "labels": dict(sorted(Counter(LABELS[s.cls] for s in prepared).items())),
        "image_extensions": sorted({s.ext for s in prepared}),
        "first_key": prepared[0].key if prepared else None,
        "last_key": prepared[-1].key if prepared else None,
        "job": job_id,
        "errors": errors or [],
    }
    atomic_write_json(root / shard.sidecar_relpath, sidecar)
    record_shard(root, shard.relpath, sidecar)
    logger.debug("wrote %s (%d samples)", shard.relpath, len(prepared))
    return sidecar
