"""The manifest ``dataigm.json``: what a dataset root holds, updated under a file lock.

It records the schema and taxonomy versions, a snapshot of every concept in the dataset (their order
is append-only, so ``ClassLabel`` ids never change), the shard index with counts, and the range of
shard numbers each job reserved (so two jobs writing the same concept/split/source never collide,
and a re-run of a job finds its own shards again).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from .concepts import Concept
from .files import atomic_write_json, check_output
from .layout import MANIFEST_NAME, README_NAME, ShardId
from .schema import SCHEMA_VERSION
from .taxonomy import TAXONOMY_VERSION

FORMAT = "dataigm"
DEFAULT_NAME = "dataigm"
# Concept fields that decide what a label means; a dataset cannot change them after writing.
_LABEL_FIELDS = ("category", "target_class", "pair_class")
_ALLOWED_FOREIGN = {README_NAME, ".gitattributes", ".git", ".cache", ".dataigm.lock"}
# The keys of a recorded model spec (a generation job's ``config.models``) that name weights: what a model computes
# with. Cache keys hash their files, cards list them; generation.pipeline's PARTS are these minus base/pipeline/lora.
MODEL_WEIGHT_KEYS = (
    "base",
    "pipeline",
    "unet",
    "transformer",
    "text_encoder",
    "text_encoder_2",
    "text_encoder_3",
    "lora",
)


def new_manifest(name: str) -> dict:
    return {
        "format": FORMAT,
        "name": name,
        "schema_version": SCHEMA_VERSION,
        "taxonomy_version": TAXONOMY_VERSION,
        "concepts": {},
        "image_extensions": [],
        "jobs": {},
        "shards": {},
    }


def read_manifest(root: str | Path) -> dict:
    """Load ``<root>/dataigm.json``; raises ``ValueError`` if it is missing or not a dataigm manifest."""
    path = Path(root) / MANIFEST_NAME
    if not path.exists():
        raise ValueError(f"{root} is not a dataigm dataset: {MANIFEST_NAME} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a dataigm manifest (its 'format' is not {FORMAT!r})")
    return data


@contextmanager
def locked(root: str | Path):
    """Hold the root's lock (workers of one job may share a root)."""
    with FileLock(str(Path(root) / ".dataigm.lock"), timeout=600):
        yield


def check_root(root: str | Path, name: str = DEFAULT_NAME, concepts: Iterable[Concept] = ()) -> None:
    """Everything :func:`open_root` and :func:`register_concepts` would refuse, checked without writing.

    Call it before a job creates anything, so that a refused job leaves no root, reservation or card behind.

    Raises:
        ValueError: ``root`` is a file or lies below one, cannot be written, holds another dataset (other name,
            schema or taxonomy version, or a concept whose labels mean something else) or other files.
    """
    root = Path(root)
    check_output(root, "folder", "Output folder")
    path = root / MANIFEST_NAME
    if path.exists():
        manifest = read_manifest(root)
        for key, expected in (
            ("name", name),
            ("schema_version", SCHEMA_VERSION),
            ("taxonomy_version", TAXONOMY_VERSION),
        ):
            if manifest.get(key) != expected:
                raise ValueError(
                    f"{root} holds a different dataset: its manifest has {key}={manifest.get(key)!r}, "
                    f"this job writes {key}={expected!r}. Choose another output folder"
                    + (" or pass --name " + repr(manifest.get(key)) if key == "name" else "")
                )
        for concept in concepts:
            check_concept(manifest, concept, root)
    elif root.exists():
        foreign = sorted(p.name for p in root.iterdir() if p.name not in _ALLOWED_FOREIGN)
        if foreign:
            raise ValueError(
                f"Output folder {root} is not empty and has no {MANIFEST_NAME} (it holds {', '.join(foreign[:5])}); "
                "choose an empty folder or an existing dataigm dataset"
            )


def open_root(root: str | Path, name: str = DEFAULT_NAME) -> dict:
    """Create or open a dataset root for writing and return its manifest.

    Raises:
        ValueError: what :func:`check_root` refuses; nothing is written in that case.
    """
    root = Path(root)
    path = root / MANIFEST_NAME
    check_root(root, name)
    if path.exists():
        return read_manifest(root)
    root.mkdir(parents=True, exist_ok=True)
    with locked(root):
        if not path.exists():
            atomic_write_json(path, new_manifest(name))
    return read_manifest(root)


def update_manifest(root: str | Path, change: Callable[[dict], object]) -> object:
    """Apply ``change(manifest)`` under the lock and save; returns what ``change`` returned."""
    with locked(root):
        manifest = read_manifest(root)
        result = change(manifest)
        atomic_write_json(Path(root) / MANIFEST_NAME, manifest)
    return result


def check_concept(manifest: dict, concept: Concept, root: str | Path = "") -> None:
    """Refuse a concept whose labels mean something else in this dataset than in the registry."""
    known = manifest["concepts"].get(concept.id)
    if known is None:
        return
    changed = [f for f in _LABEL_FIELDS if known.get(f) != getattr(concept, f)]
    if changed:
        diffs = ", ".join(f"{f}: dataset {known.get(f)!r} vs registry {getattr(concept, f)!r}" for f in changed)
        raise ValueError(f"Concept {concept.id!r} in {root or 'the dataset'} differs from the registry ({diffs})")


def register_concepts(root: str | Path, concepts: list[Concept]) -> None:
    """Add concept snapshots to the manifest (append-only), after checking existing ones agree."""

    def change(manifest: dict) -> None:
        for concept in concepts:
            check_concept(manifest, concept, root)
            manifest["concepts"].setdefault(concept.id, concept.to_dict())

    update_manifest(root, change)


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_reservation(root, job_id: str, job: dict, group: str, count: int, plan: dict | None) -> None:
    start, reserved = job["ranges"][group]
    before = job.get("plan")
    changed = {k: (v, plan.get(k)) for k, v in before.items() if v != plan.get(k)} if before and plan else {}
    if reserved == count and not changed:
        return
    if changed:
        what = "; ".join(f"{_option(k)} was {old}, now {new}" for k, (old, new) in changed.items())
        again = " ".join(f"{_option(k)} {old}" for k, (old, _) in changed.items())
    else:
        what, again = f"it reserved {reserved} shards in {group} but now plans {count}", ""
    raise ValueError(
        f"Job {job_id} ({job.get('description') or 'no description'}) was started in {root} with another shard "
        f"plan ({what}); the same samples cut otherwise would be written twice. To finish that job, run it again "
        f"with {again or 'the options of its first run'}; to write a new copy, choose another --out"
    )


def check_reservations(root: str | Path, job_id: str, counts: dict[str, int], plan: dict | None = None) -> None:
    """What :func:`reserve_shards` would refuse for ``{group: count}``, checked without writing."""
    if not (Path(root) / MANIFEST_NAME).exists():
        return
    job = read_manifest(root)["jobs"].get(job_id)
    for group, count in counts.items():
        if job is not None and group in job["ranges"]:
            _check_reservation(root, job_id, job, group, count, plan)


def reserve_shards(
    root: str | Path, job_id: str, group: str, count: int, description: str = "", plan: dict | None = None
) -> int:
    """The first shard index of ``job_id`` in ``group`` (``concept/split/source``).

    A job that runs again gets its earlier reservation back; a new job gets the next free range.

    Args:
        root: the dataset root.
        job_id: id of the job; it names the work (which samples), not how the work is cut into shards.
        group: ``concept/split/source``.
        count: number of shards the job writes in ``group``.
        description: one line saying what the job is, kept in the manifest.
        plan: the options that decide how the work is cut into shards (e.g. ``{"samples_per_shard": 1000}``).
            They are kept with the reservation, and a run of the same job that cuts it otherwise is refused.

    Raises:
        ValueError: the job already reserved shards in ``group`` with another plan or another count (its samples
            would be written twice); the message says what changed and how to finish the job.
    """

    def change(manifest: dict) -> int:
        job = manifest["jobs"].setdefault(job_id, {"description": description, "ranges": {}})
        if plan is not None:
            job.setdefault("plan", plan)
        if group in job["ranges"]:
            _check_reservation(root, job_id, job, group, count, plan)
            return job["ranges"][group][0]
        taken = [s + n for j in manifest["jobs"].values() for g, (s, n) in j["ranges"].items() if g == group]
        # shards written outside any reservation (by write_shard directly) keep their numbers too
        indexed = (ShardId.parse(relpath) for relpath in manifest["shards"])
        taken += [shard.index + 1 for shard in indexed if shard.group == group]
        start = max(taken, default=0)
        job["ranges"][group] = [start, count]
        return start

    return update_manifest(root, change)


def record_shard(root: str | Path, relpath: str, sidecar: dict) -> None:
    """Enter a finished shard into the manifest's index."""

    def change(manifest: dict) -> None:
        manifest["shards"][relpath] = {k: sidecar[k] for k in ("count", "sha256", "size", "labels")}
        manifest["shards"] = dict(sorted(manifest["shards"].items()))
        manifest["image_extensions"] = sorted(set(manifest["image_extensions"]) | set(sidecar["image_extensions"]))

    update_manifest(root, change)
