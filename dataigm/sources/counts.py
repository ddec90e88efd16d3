"""The counts of a web or Hub ingest job, written next to its shards as ``meta/<job>-counts.json``.

The selection's counts (rows seen, after ``--where``, selected per class) come from the planner; the images
written per class and the inputs left out by reason are read back from the job's shard sidecars, so a resumed
job reports the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ..files import atomic_write_json
from ..layout import META_DIR, ShardId
from ..manifest import read_manifest


def counts_relpath(job_id: str) -> str:
    """Where a job's counts are written, relative to the root."""
    return f"{META_DIR}/{job_id}-counts.json"


def job_shards(root: str | Path, job_id: str) -> list[ShardId]:
    """Every shard the manifest reserves for ``job_id``."""
    ranges = read_manifest(root)["jobs"].get(job_id, {}).get("ranges", {})
    return [
        ShardId(*group.split("/"), i) for group, (start, n) in sorted(ranges.items()) for i in range(start, start + n)
    ]


def write_job_counts(root: str | Path, job_id: str, selection: dict, written_key: str = "written") -> dict:
    """``selection`` plus, from the job's sidecars, the images written per class (under ``written_key``) and
    the inputs left out by reason; written to :func:`counts_relpath` and returned."""
    written: Counter = Counter()
    failed: Counter = Counter()
    for shard in job_shards(root, job_id):
        sidecar_path = Path(root) / shard.sidecar_relpath
        if not sidecar_path.exists():
            continue
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
        written.update(sidecar.get("labels", {}))
        failed.update(e["reason"] for e in sidecar.get("errors", []))
    counts = {
        **selection,
        written_key: dict(sorted(written.items())),
        "failed": sum(failed.values()),
        "failed_by_reason": dict(sorted(failed.items(), key=lambda kv: (-kv[1], kv[0]))),
        "counts_file": counts_relpath(job_id),
    }
    atomic_write_json(Path(root) / counts_relpath(job_id), counts)
    return counts
