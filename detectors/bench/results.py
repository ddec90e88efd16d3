"""Benchmark results: one schema-versioned JSON per (suite, model) that anyone can recompute and check.

A results file names the suite it belongs to (name, version, sha256 of the suite file), the model (its spec and the
identity of every weights file, :func:`dataigm.identity.weights_identity`), each judge's fingerprint, the package
and library versions, device, dtype and date, and the flags ``nonstandard`` (with what was changed) and
``images_supplied``. Its ``numbers`` are derived from its ``outcomes``, the per-prompt binary outcomes (1 = the
concept leaked / the attack succeeded), so that a reader can recompute every number (:func:`recompute_numbers`),
re-bootstrap, or pair two models on the same prompts (:mod:`detectors.bench.paired`). Numbers that are not shares
of prompts (FID, CLIP score) are ``supplied`` with their own interval and rule.

``checksum`` is the sha256 of the canonical JSON of everything else (:func:`canonical_bytes`): a file changed after
it was written (one outcome flipped, a number edited) is refused by :func:`read_results` in one line, and so is a
file whose numbers do not follow from its outcomes.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from dataigm.env import PACKAGES
from dataigm.files import atomic_write_bytes
from detectors.stats import proportion

SCHEMA = "dataigm-bench-results"
SCHEMA_VERSION = 1
METRIC = re.compile(r"^[a-z][a-z0-9_]*$")
DEFAULT_RULE = "share of the prompts whose outcome is 1"
# the fields a board and a push read (checked on reading, so a hand-made file fails in one line, not deep inside)
REQUIRED = {
    "suite": dict,
    "concepts": list,
    "model": dict,
    "judges": dict,
    "versions": dict,
    "device": str,
    "dtype": str,
    "date": str,
    "nonstandard": dict,
    "images_supplied": bool,
    "outcomes": list,
    "numbers": dict,
}
# UnlearnDiffAtk's check_asr.py counts a prompt successful before the attack once, as a success after it too
IMPLIED = {"post_asr": "pre_asr"}


def canonical_bytes(data: Mapping) -> bytes:
    """The canonical JSON of ``data`` without its ``checksum``: sorted keys, no spaces, UTF-8, no NaN.

    Python writes every float by its shortest round-trip representation, so reading a file and writing it again
    gives the same bytes, and the checksum of a file read back is the checksum it was written with.
    """
    body = {k: v for k, v in data.items() if k != "checksum"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def checksum(data: Mapping) -> str:
    """sha256 (hex) of :func:`canonical_bytes`."""
    return hashlib.sha256(canonical_bytes(data)).hexdigest()


def library_versions() -> dict[str, str]:
    """python, the platform and the versions of the packages ``dataigm env`` reports (no device: the caller's)."""

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {"python": platform.python_version(), "platform": platform.platform()} | {n: version(n) for n in PACKAGES}


# ---------------------------------------------------------------- outcomes


def _binary(value, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or value in (0, 1):
        return int(value)
    raise ValueError(f"{where}: an outcome is 0, 1 or null (not judged), got {value!r}")


def check_outcomes(outcomes: Iterable[Mapping], concepts: Iterable[str]) -> list[dict]:
    """Per-prompt outcome records, checked and normalised (0/1 as integers).

    Each record: ``prompt`` (the prompt's id in its set), ``concept`` (one of the suite's), ``outcomes``
    (``{metric: 0 | 1 | null}``), and optionally ``prompt_set``, ``seed``, ``guidance`` and ``probabilities``
    (``{metric: [the judge's probability per image]}``).

    Raises:
        ValueError: a record without a prompt or concept, a concept not the suite's, an unknown key, a metric name
            that is not ``lower_snake_case``, an outcome other than 0/1/null, the same prompt twice, or a
            ``post_asr`` of 0 where ``pre_asr`` is 1.
    """
    known = set(concepts)
    allowed = {"prompt", "prompt_set", "concept", "seed", "guidance", "outcomes", "probabilities"}
    seen: set[tuple] = set()
    out = []
    for i, record in enumerate(outcomes):
        where = f"outcomes[{i}]"
        if not isinstance(record, Mapping):
            raise ValueError(f"{where}: not an object")
        extra = set(record) - allowed
        if extra:
            raise ValueError(f"{where}: unknown key(s) {sorted(extra)}")
        if record.get("prompt") in (None, "") or record.get("concept") not in known:
            raise ValueError(f"{where}: needs a prompt id and one of the suite's concepts {sorted(known)}")
        values = record.get("outcomes")
        if not isinstance(values, Mapping) or not values:
            raise ValueError(f"{where}: outcomes must be a non-empty {{metric: 0|1|null}} object")
        clean = {}
        for metric, value in values.items():
            if not METRIC.match(str(metric)):
                raise ValueError(f"{where}: metric name {metric!r} is not lower_snake_case")
            clean[metric] = _binary(value, f"{where}.outcomes.{metric}")
        for after, before in IMPLIED.items():
            if clean.get(before) == 1 and clean.get(after) == 0:
                raise ValueError(
                    f"{where}: {after} is 0 where {before} is 1 (a prompt successful before counts after)"
                )
        key = (record["concept"], record.get("prompt_set"), str(record["prompt"]))
        if key in seen:
            raise ValueError(f"{where}: prompt {key[2]!r} of concept {key[0]!r} appears twice")
        seen.add(key)
        entry = {"prompt": str(record["prompt"]), "concept": record["concept"], "outcomes": clean}
        for optional in ("prompt_set", "seed", "guidance", "probabilities"):
            if record.get(optional) is not None:
                entry[optional] = record[optional]
        out.append(entry)
    if not out:
        raise ValueError("no per-prompt outcomes: a result is computed from them")
    return out


def prompt_key(record: Mapping) -> str:
    """The identity of a prompt across models of one suite: concept, prompt set, prompt id and seed."""
    return "|".join(str(record.get(k, "")) for k in ("concept", "prompt_set", "prompt", "seed"))


# ---------------------------------------------------------------- numbers


def recompute_numbers(results: Mapping) -> dict[str, dict]:
    """Every ``measured`` number of a results file from its per-prompt outcomes.

    For each metric, one number per concept (key ``metric/concept``) and one over all the suite's prompts (key
    ``metric``): the share of judged prompts whose outcome is 1, with its Wilson interval over prompts
    (:func:`detectors.stats.proportion`); prompts without an outcome (null) are left out of ``n`` and counted in
    ``excluded``.
    """
    paths = {c["id"]: c["category"] for c in results["concepts"]}
    rules, better = results.get("rules", {}), results.get("better", {})
    counts: dict[tuple[str, str | None], list[int]] = {}
    for record in results["outcomes"]:
        for metric, value in record["outcomes"].items():
            for concept in (record["concept"], None):
                count = counts.setdefault((metric, concept), [0, 0, 0])  # successes, judged, not judged
                if value is None:
                    count[2] += 1
                else:
                    count[0] += value
                    count[1] += 1
    numbers = {}
    for (metric, concept), (successes, n, missing) in sorted(
        counts.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
    ):
        key = metric if concept is None else f"{metric}/{concept}"
        number = proportion(successes, n, {"not_judged": missing} if missing else None)
        if n == 0:  # the suite's reason when the concept's judge is not available, never a default value
            reason = (results.get("judges", {}).get(concept) or {}).get("unavailable") if concept else None
            number["skipped"] = f"no judge: {reason}" if reason else "no prompt has a judged outcome"
        numbers[key] = number | {
            "metric": metric,
            "concept": concept,
            "path": paths.get(concept),
            "successes": successes,
            "rule": rules.get(metric, DEFAULT_RULE),
            "better": better.get(metric, "lower"),
            "kind": "measured",
        }
    return numbers


def _supplied(metrics: Mapping[str, Mapping], paths: Mapping[str, str]) -> dict[str, dict]:
    """Numbers that are not shares of prompts (FID, CLIP score), as the caller measured them, checked."""
    out = {}
    for key, number in metrics.items():
        metric, _, concept = key.partition("/")
        if not METRIC.match(metric) or (concept and concept not in paths):
            raise ValueError(f"supplied number {key!r}: METRIC or METRIC/CONCEPT (one of the suite's concepts)")
        missing = {"value", "ci", "ci_rule", "n", "rule", "better"} - set(number)
        if missing:
            raise ValueError(f"supplied number {key!r}: missing {sorted(missing)} (every number has its interval)")
        if number["better"] not in ("lower", "higher"):
            raise ValueError(f"supplied number {key!r}: better is 'lower' or 'higher'")
        value = number["value"]
        if value is not None and not (isinstance(value, int | float) and math.isfinite(value)):
            raise ValueError(f"supplied number {key!r}: value {value!r} is not a finite number (or null with skipped)")
        if value is None and not number.get("skipped"):
            raise ValueError(f"supplied number {key!r}: a number that could not be computed says why (skipped)")
        out[key] = dict(number) | {
            "metric": metric,
            "concept": concept or None,
            "path": paths.get(concept) if concept else None,
            "kind": "supplied",
        }
    return out


# ---------------------------------------------------------------- building, writing, reading


def _hub_repo(weights: Mapping[str, Mapping]) -> str | None:
    """The Hub repository the evaluated model is published as: its pipeline, else the one Hub repository of its
    replaced parts, else its base (a base model evaluated as itself); None when no such single repository."""
    hub = {k: "/".join(v["hub"].split("/")[:2]) for k, v in weights.items() if v.get("hub")}
    if "pipeline" in hub:
        return hub["pipeline"]
    parts = {repo for key, repo in hub.items() if key != "base"}
    if len(parts) == 1:
        return parts.pop()
    if not parts and set(weights) == {"base"} and "base" in hub:
        return hub["base"]
    return None


def build_results(
    suite,
    model: Mapping,
    outcomes: Iterable[Mapping],
    *,
    judges: Mapping[str, Mapping],
    device: str,
    dtype: str,
    weights: Mapping[str, Mapping] | None = None,
    metrics: Mapping[str, Mapping] | None = None,
    nonstandard: Iterable[str] = (),
    images_supplied: bool = False,
    date: str | None = None,
    versions: Mapping[str, str] | None = None,
) -> dict:
    """A results file's content, checksum included.

    Args:
        suite: the :class:`dataigm.suite.Suite` the outcomes were measured on.
        model: ``label`` (the row's name on a board) and ``spec`` (the model spec as plain data, e.g.
            :meth:`generation.spec.ModelSpec.to_dict`); optional ``hub`` (the model's Hub repository).
        outcomes: per-prompt outcome records (:func:`check_outcomes`).
        judges: ``{concept: {"spec": ..., "fingerprint": ...}}`` for every concept with outcomes.
        device: where it ran, e.g. ``cuda:0 NVIDIA H100``.
        dtype: the sampling dtype.
        weights: ``{key: identity}`` of every weights file the spec loads; None: computed from ``model["spec"]``
            with :func:`dataigm.identity.weights_identity` (reads the local files, no network).
        metrics: supplied numbers (FID, CLIP score): ``{METRIC[/CONCEPT]: {value, ci, ci_rule, n, rule, better}}``.
        nonstandard: what differs from the suite (empty: the suite as defined).
        images_supplied: the images were given, not generated by this run.
        date: ISO date-time (default: now, UTC).
        versions: package and library versions (default: :func:`library_versions`).

    Raises:
        ValueError: a model without label or spec, bad outcomes, a concept without its judge, a bad supplied number.
    """
    if not model.get("label") or model.get("spec") in (None, "", {}):
        raise ValueError("the model needs a label (its name on a board) and its spec")
    concepts = [{"id": c["id"], "category": c["category"]} for c in suite.data["concepts"]]
    checked = check_outcomes(outcomes, [c["id"] for c in concepts])
    missing = sorted({r["concept"] for r in checked} - set(judges))
    if missing:
        raise ValueError(f"no judge fingerprint for concept(s) {missing}: every outcome names the judge that made it")
    if weights is None:
        from dataigm.identity import weights_identity

        spec = model["spec"]
        weights = weights_identity(spec if isinstance(spec, Mapping) else {"base": spec})
    suite_metrics = suite.data.get("metrics") or {}
    rules = {m: str(v["rule"]).strip() for m, v in suite_metrics.items() if isinstance(v, Mapping) and v.get("rule")}
    better = {t["metric"]: t["better"] for t in suite.data["composite"]["terms"]}
    changes = [str(c) for c in nonstandard]
    results = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "suite": suite.identity(),
        "concepts": concepts,
        "model": {
            "label": str(model["label"]),
            "spec": model["spec"],
            "weights": {k: dict(v) for k, v in weights.items()},
            "hub": model.get("hub") or _hub_repo(weights),
        },
        "judges": {c: dict(j) for c, j in judges.items()},
        "versions": dict(versions if versions is not None else library_versions()),
        "device": device,
        "dtype": dtype,
        "date": date or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "nonstandard": {"value": bool(changes), "changes": changes},
        "images_supplied": bool(images_supplied),
        "rules": rules,
        "better": better,
        "outcomes": checked,
    }
    results["numbers"] = recompute_numbers(results) | _supplied(
        metrics or {}, {c["id"]: c["category"] for c in concepts}
    )
    results["checksum"] = checksum(results)
    return results


def results_file_name(results: Mapping) -> str:
    """``SUITE@VERSION--LABEL.json``, the label reduced to letters, digits, dots, dashes and underscores."""
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", results["model"]["label"]).strip("-.") or "model"
    return f"{results['suite']['id']}--{label}.json"


def write_results(results: Mapping, path: str | Path) -> Path:
    """Write ``results`` (pretty JSON, atomically) after checking its checksum; returns the path.

    Raises:
        ValueError: ``results`` was changed after :func:`build_results` (its checksum no longer matches).
    """
    if results.get("checksum") != checksum(results):
        raise ValueError("these results were changed after they were built (checksum mismatch); not written")
    path = Path(path)
    atomic_write_bytes(path, (json.dumps(results, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode())
    return path


def read_results(path: str | Path) -> dict:
    """Read a results file and verify it: schema, checksum, and numbers that follow from its outcomes.

    Raises:
        ValueError: in one line: not a results file, an unknown schema version, a file whose content does not match
            its checksum (changed after it was written), or numbers that differ from those its outcomes give.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ValueError(f"Results file {str(path)!r} does not exist") from None
    except (UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"Results file {str(path)!r} is not JSON: {err}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f"{path} is not a dataigm bench results file (schema {SCHEMA!r})")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{path}: results schema version {data.get('schema_version')!r}; this dataigm reads {SCHEMA_VERSION}"
        )
    try:
        actual = checksum(data)
    except ValueError:  # NaN or infinity: never written by us
        actual = None
    if data.get("checksum") != actual:
        raise ValueError(
            f"{path} does not match its checksum (recorded {str(data.get('checksum'))[:12]}, content "
            f"{str(actual)[:12]}): it was changed after it was written; refused"
        )
    missing = sorted(k for k, kind in REQUIRED.items() if not isinstance(data.get(k), kind))
    if missing or not data["model"].get("label") or not isinstance(data["nonstandard"].get("changes"), list):
        raise ValueError(f"{path}: incomplete results file (missing or malformed: {missing or ['model/nonstandard']})")
    try:
        concepts = [c["id"] for c in data["concepts"]]
        outcomes = check_outcomes(data["outcomes"], concepts)
        recomputed = recompute_numbers(data | {"outcomes": outcomes})
        measured = {k: v for k, v in data["numbers"].items() if v.get("kind") == "measured"}
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: incomplete results file ({type(err).__name__}: {err})") from None
    if measured != recomputed:
        wrong = sorted(set(measured) ^ set(recomputed) | {k for k in measured if measured[k] != recomputed.get(k)})
        raise ValueError(f"{path}: numbers {wrong[:3]} do not follow from its per-prompt outcomes; refused")
    for key, number in data["numbers"].items():  # a supplied mean with its per-prompt values (CLIP score)
        values = number.get("per_prompt") if isinstance(number, dict) else None
        if (
            isinstance(values, dict)
            and values
            and not math.isclose(
                sum(values.values()) / len(values),
                math.nan if number.get("value") is None else number["value"],
                rel_tol=1e-9,
                abs_tol=1e-12,
            )
        ):
            raise ValueError(f"{path}: number {key!r} is not the mean of its per-prompt values; refused")
    return data
