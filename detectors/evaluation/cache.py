"""The evaluation's cache: JSON results under ``<out>/cache``, each valid while the fingerprint of its inputs holds.

A fingerprint covers (the keys of one result: :meth:`detectors.evaluation.plan.AspectJob.inputs`):

* the images: the sha256 of every image's bytes, with its key, kind, family, sample, group, sub-theme
  and prompt text (:func:`image_inputs`);
* the judge by what decides its outputs: :meth:`detectors.judges.Judge.fingerprint` (weights as loaded,
  thresholds, temperatures, input transform; for baselines their spec and weight files), with the kind of
  its spec (``local-dir``, ``hf-hub``...); where the judge lives does not count (:func:`judge_inputs`);
* every option that changes the metric (backbone names, their local weight files or folders by content
  (:func:`backbone_content`), ``*_pretrained``, ``lpips_random_backbone``, the concept's nature) and the
  resolved device;
* the versions of the libraries that compute the numbers (:data:`NUMERIC_PACKAGES`) and the sha256 of
  the evaluation's own code (:func:`code_digest`).

Files and models are identified by content through :mod:`dataigm.identity`. The cache file keeps these inputs in
readable form (images by the digest of their list) beside the result.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from dataigm.files import atomic_write_json
from dataigm.identity import DigestCache, hub_commit, json_sha256, weights_identity

logger = logging.getLogger(__name__)

# Libraries whose version can change a number of the report (and so keys every cached result).
NUMERIC_PACKAGES = (
    "torch", "torchvision", "torchmetrics", "torch-fidelity", "lpips", "transformers", "timm", "numpy", "scipy",
    "pillow", "nudenet", "onnxruntime",
)  # fmt: skip
_THIS = Path(__file__).resolve().parent

Digests = DigestCache  # the name the evaluation's callers know


class Cache:
    """JSON results keyed by name, valid while their inputs' fingerprint is unchanged."""

    def __init__(self, folder: Path):
        self.folder = folder

    def get_or_compute(
        self, name: str, fingerprint: str, compute: Callable[[], dict], inputs: dict | None = None
    ) -> dict:
        """The cached result of ``name`` when its fingerprint matches, else ``compute()`` (then cached)."""
        path = self.folder / f"{name}.json"
        if path.exists():
            cached = json.loads(path.read_text(encoding="utf-8"))
            if cached.get("fingerprint") == fingerprint:
                return cached["result"]
            logger.info("recomputing %s: its inputs changed", name)
        result = compute()
        entry = {"fingerprint": fingerprint, "result": result}
        if inputs is not None:
            entry["inputs"] = inputs
        atomic_write_json(path, entry)
        return result


def fingerprint(*parts: object) -> str:
    """sha256 (hex) of the JSON of ``parts``; anything JSON cannot write raises (a repr may hold an address)."""
    return json_sha256(parts, default=_json_default)


def _json_default(value: object):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def judge_inputs(judge) -> dict:
    """What a judge's decisions depend on, for cache keys: the kind of its spec and its own fingerprint."""
    return {"kind": str(judge.spec).partition(":")[0], "fingerprint": judge.fingerprint()}


def backbone_content(name: str | None, digests: DigestCache) -> dict | None:
    """A metric backbone by content: a local folder/file (or ``local-dir:`` folder) by sha256, ``hf-hub:`` and
    Hub ids by their cached revision, any other name (timm, torchvision, ``inception``) by itself."""
    if name is None:
        return None
    kind, _, location = name.partition(":")
    if kind == "local-dir":
        return {"name": name if not Path(location).is_dir() else "local-dir", "sha256": digests.maybe_path(location)}
    if kind == "hf-hub":
        return {"name": name, "revision": hub_commit(location.partition("@")[0])}
    local = digests.maybe_path(name)
    if local is not None:
        return {"name": "local", "sha256": local}
    return {"name": name, "revision": hub_commit(name) if "/" in name else None}


def spec_content(spec, digests: DigestCache) -> dict:
    """A model spec by content: its fields, and the identity of each weights file, folder or Hub model it loads
    (:func:`dataigm.identity.weights_identity`, the identity its generation job records)."""
    fields = spec.to_dict()
    return {"spec": fields, "files": weights_identity(fields, digests)}


def code_digest(extra_files: tuple = ()) -> str:
    """sha256 of the evaluation's code that computes numbers (every module here but the report's and the CLI's)."""
    files = sorted(p for p in _THIS.glob("*.py") if p.name not in ("report.py", "__init__.py"))
    files += [_THIS.parent / "stats.py"]  # the intervals: a changed rule recomputes them
    files += [Path(f) for f in extra_files]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def numeric_versions() -> dict[str, str | None]:
    """Installed versions of :data:`NUMERIC_PACKAGES` (None when not installed)."""
    out = {}
    for name in NUMERIC_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def image_inputs(images) -> dict:
    """The images a result is computed from (:class:`detectors.evaluation.images.EvalImage`): their count and the
    sha256 of their sorted descriptions."""
    rows = sorted(
        [im.key, im.digest, im.kind, im.family, im.sample, im.group, im.subtheme, im.prompt] for im in images
    )  # keys are unique, so the sort never compares the later (possibly None) fields
    return {"n": len(rows), "sha256": fingerprint(rows)}
