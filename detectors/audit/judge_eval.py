"""Measure a judge on a split of a DataIGM root, per concept x source x unlearning method, with bootstrap CIs.

Outputs (``write_report``)::

    metrics.json                every group's metrics with confidence intervals, the judge, the data
    predictions.csv             one row per image: key, concept, source, method, label, probability, decision, and
                                the judge's per-image details (``Prediction.details``, e.g. a VLM's answer_mass)
    roc_<concept>.png           ROC curves: all images and one per source
    reliability_<concept>.png   reliability diagram of the concept probability
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detectors.audit.intervals import ECE_BINS, holdout_comparison, metric_report
from detectors.audit.plots import reliability_plot, roc_plot
from detectors.data import Entry, available_splits, build_index, dataset_revision
from detectors.judges.base import Judge, Prediction

logger = logging.getLogger(__name__)

ALL = "all"
NO_METHOD = "none"  # real and web images have no unlearning method


@dataclass
class Evaluation:
    """A judge's predictions on a split and the metrics computed from them."""

    report: dict
    entries: list[Entry]
    prediction: Prediction
    pairs: list[tuple[str, str]]  # (data concept, judge concept)


def concept_pairs(
    judge_concepts: Sequence[str], data_concepts: Sequence[str], concept: str | None = None
) -> list[tuple[str, str]]:
    """Which dataset concept each judge concept is measured on: ``[(data concept, judge concept)]``.

    Shared ids pair up. A one-concept judge whose concept the data does not name (a baseline such as
    ``imagenet:classes=497``) is measured on ``concept``, or on the data's only concept.
    """
    judge_concepts, data_concepts = list(judge_concepts), list(data_concepts)
    if concept is not None:
        if concept not in data_concepts:
            raise ValueError(f"Concept {concept!r} is not in the data; its concepts: {', '.join(data_concepts)}")
        if concept in judge_concepts:
            return [(concept, concept)]
        if len(judge_concepts) == 1:
            return [(concept, judge_concepts[0])]
        raise ValueError(f"The judge has no concept {concept!r}; its concepts: {', '.join(judge_concepts)}")
    pairs = [(c, c) for c in judge_concepts if c in data_concepts]
    if pairs:
        return pairs
    if len(judge_concepts) == 1 and len(data_concepts) == 1:
        return [(data_concepts[0], judge_concepts[0])]
    raise ValueError(
        f"The judge's concepts ({', '.join(judge_concepts)}) are not in the data ({', '.join(data_concepts)}); "
        "name the dataset concept to measure it on with --concept"
    )


def _groups(entries: Sequence[Entry]) -> list[tuple[str, str, np.ndarray]]:
    """``(source, method, row indices)``: all images, each source, each method, each source x method.

    A source x method cell that holds the same images as its source's row (a source with one method,
    e.g. real images and method ``none``) is left out.
    """
    sources = np.array([e.source for e in entries])
    methods = np.array([e.method or NO_METHOD for e in entries])
    groups = [(ALL, ALL, np.ones(len(entries), dtype=bool))]
    groups += [(s, ALL, sources == s) for s in sorted(set(sources))]
    groups += [(ALL, m, methods == m) for m in sorted(set(methods))]
    for source in sorted(set(sources)):
        for method in sorted(set(methods)):
            rows = (sources == source) & (methods == method)
            if rows.any() and not np.array_equal(rows, sources == source):
                groups.append((source, method, rows))
    return [(source, method, np.flatnonzero(rows)) for source, method, rows in groups if rows.any()]


def parse_methods(methods: str | Sequence[str] | None) -> list[str]:
    """``"ESD,UCE"`` or ``["ESD", "UCE"]`` (or ``["ESD,UCE"]``) -> ``["ESD", "UCE"]``, in order, once each."""
    if methods is None:
        return []
    items = [methods] if isinstance(methods, str) else list(methods)
    return list(dict.fromkeys(m.strip() for item in items for m in str(item).split(",") if m.strip()))


def judge_excluded_methods(judge: Judge) -> list[str] | None:
    """The methods a trained judge's training left out (``dataset.exclude_methods`` of its config), or None
    when the judge does not say (a baseline, or a judge trained before the option existed)."""
    dataset = judge.describe().get("dataset") or {}
    excluded = dataset.get("exclude_methods") if isinstance(dataset, dict) else None
    return None if excluded is None else parse_methods(excluded)


def _holdout_section(
    judge: Judge,
    holdout_methods: str | Sequence[str] | None,
    entries: Sequence[Entry],
    split: str,
) -> dict | None:
    """Which methods are held out and why; None when there are none to report.

    Raises:
        ValueError: a held-out method that no image of the split has (the message lists those it has).
    """
    excluded = judge_excluded_methods(judge)
    methods = parse_methods(holdout_methods)
    chosen_by = "option --holdout-methods"
    if not methods:
        methods, chosen_by = list(excluded or []), "the judge's config.json (dataset.exclude_methods)"
    if not methods:
        return None
    present = sorted({e.method for e in entries if e.method})
    unknown = [m for m in methods if m not in present]
    if unknown:
        raise ValueError(
            f"Held-out method(s) {unknown} have no image in split {split!r}; its methods: "
            f"{', '.join(present) or 'none (no generated images with a method)'}"
        )
    return {
        "methods": methods,
        "chosen_by": chosen_by,
        "judge_excluded_methods": excluded,
        # named as held out, but the judge's own config says its training saw them
        "seen_in_training": [m for m in methods if excluded is not None and m not in excluded],
        "rows": [],
    }


def check_eval_options(
    root: str | Path | None = None,
    split: str = "test",
    concept: str | None = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    batch_size: int = 32,
    num_workers: int | None = None,
) -> None:
    """Check every option of a judge evaluation before any judge or image is loaded; raise on the first bad one.

    Reads only the root's manifest (its splits and concepts).

    Raises:
        ValueError: naming the bad value and the valid ones.
    """
    if isinstance(ci, bool) or not isinstance(ci, (int, float)) or not 0.0 < ci < 1.0:
        raise ValueError(f"ci={ci!r} must be strictly between 0 and 1 (e.g. 0.95)")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 0:
        raise ValueError(f"bootstrap={n_boot!r} must be a number of resamples >= 0 (0: no intervals)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be at least 1")
    if num_workers is not None and (
        isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0
    ):
        raise ValueError(
            f"num_workers={num_workers!r} must be None (sized to the host), 0 (no worker processes) or more"
        )
    if root is None:
        return
    from dataigm.manifest import read_manifest

    splits = available_splits(root)
    if split not in splits:
        raise ValueError(f"Split {split!r} of {root} has no images; its splits: {', '.join(splits) or 'none'}")
    if concept is not None:
        known = list(read_manifest(root)["concepts"])
        if concept not in known:
            raise ValueError(f"Concept {concept!r} is not in the data; its concepts: {', '.join(known)}")


def evaluate_judge(
    judge: Judge,
    root: str | Path,
    split: str = "test",
    concept: str | None = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    batch_size: int = 32,
    num_workers: int | None = None,
    progress: bool = False,
    holdout_methods: str | Sequence[str] | None = None,
) -> Evaluation:
    """Judge every image of ``split`` labelled for one of the judge's concepts and measure the judge.

    Args:
        judge: any :class:`Judge` (trained or baseline).
        root: a DataIGM root.
        split: the split to measure on.
        concept: the dataset concept for a one-concept judge whose concept the data does not name.
        n_boot, ci, seed: bootstrap resamples, confidence level and seed.
        batch_size: images per judge call.
        num_workers: DataLoader worker processes that read the images (0: this process; None: sized to the host,
            none for a small pass or small images: :func:`detectors.data.one_pass_workers`); no number depends on it.
        progress: show a progress bar.
        holdout_methods: unlearning methods to measure apart as held out (``"ESD,UCE"`` or a list), next to
            the other methods (seen); default: the methods the judge's training excluded (its config.json).
            The report's ``holdout`` section then has, per concept, the held-out and seen metrics and their
            gap (seen minus held-out) with intervals; images without a method (real, web) are in neither.

    Judgements that are not valid (an unreadable image, or a NaN or out-of-range probability from the
    judge) are left out of every metric and counted: ``unreadable_images`` and ``excluded_nan``.
    """
    check_eval_options(root, split, concept, n_boot, ci, batch_size, num_workers)
    everything = build_index(root, split=split)
    if not everything:
        raise ValueError(f"Split {split!r} of {root} has no images; its splits: {', '.join(available_splits(root))}")
    pairs = concept_pairs(judge.concepts, sorted({e.concept for e in everything}), concept)
    wanted = {data_concept for data_concept, _ in pairs}
    entries = [e for e in everything if e.concept in wanted]
    holdout = _holdout_section(judge, holdout_methods, entries, split)  # checked before any image is judged
    logger.info("judging %d images of %s/%s", len(entries), root, split)
    prediction = judge.predict_entries(entries, batch_size=batch_size, num_workers=num_workers, progress=progress)
    rows = []
    skipped, excluded_nan = 0, {}
    for data_concept, judge_concept in pairs:
        col = judge.concepts.index(judge_concept)
        mine = np.array([e.concept == data_concept for e in entries], dtype=bool)
        usable = mine & prediction.valid[:, col]
        skipped += int((mine & prediction.unreadable).sum())
        excluded_nan[data_concept] = int((mine & ~prediction.unreadable & ~prediction.valid[:, col]).sum())
        subset = [e for e, keep in zip(entries, usable, strict=True) if keep]
        idx = np.flatnonzero(usable)
        targets = np.array([e.cls for e in subset])
        probs = prediction.probabilities[idx, col]
        present = prediction.present[idx, col]
        for source, method, group in _groups(subset):
            report = metric_report(targets[group], probs[group], present[group], n_boot, ci, seed)
            rows.append(
                {"concept": data_concept, "judge_concept": judge_concept, "source": source, "method": method, **report}
            )
        methods = [e.method for e in subset]
        has_method = np.array([bool(m) for m in methods], dtype=bool)
        if holdout is not None and has_method.any():  # a concept without generated images has no method to hold out
            held = np.array([m in holdout["methods"] for m in methods if m], dtype=bool)
            comparison = holdout_comparison(
                targets[has_method], probs[has_method], present[has_method], held, n_boot, ci, seed
            )
            seen_methods = sorted({m for m in methods if m and m not in holdout["methods"]})
            holdout["rows"].append(
                {"concept": data_concept, "judge_concept": judge_concept, "seen_methods": seen_methods, **comparison}
            )
    report = {
        "judge": judge.describe(),
        "data": {"root": str(root), "split": split, **dataset_revision(root)},
        "bootstrap": {"resamples": n_boot, "ci": ci, "seed": seed, "ece_bins": ECE_BINS},
        "images": len(entries),
        "unreadable_images": skipped,
        # readable images whose judgement was NaN or outside [0, 1]: left out of the metrics, never "absent"
        "excluded_nan": sum(excluded_nan.values()),
        "excluded_nan_by_concept": excluded_nan,
        "rows": rows,
    }
    if holdout is not None:
        report["holdout"] = holdout
    return Evaluation(report, entries, prediction, pairs)


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value


def write_report(evaluation: Evaluation, out: str | Path) -> dict[str, Path]:
    """Write metrics.json, predictions.csv and the plots into ``out``; returns the paths by name."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": out / "metrics.json", "predictions": out / "predictions.csv"}
    paths["metrics"].write_text(json.dumps(_jsonable(evaluation.report), indent=2) + "\n", encoding="utf-8")
    prediction, entries = evaluation.prediction, evaluation.entries
    details = prediction.details or {}
    with open(paths["predictions"], "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["id", "concept", "source", "method", "prompt_kind", "label", "judge_concept", "probability", "present"]
            + list(details)
        )
        for data_concept, judge_concept in evaluation.pairs:
            col = prediction.concepts.index(judge_concept)
            for row, entry in enumerate(entries):
                if entry.concept != data_concept:
                    continue
                prob = prediction.probabilities[row, col]
                valid = prediction.valid[row, col]
                writer.writerow(
                    [
                        entry.uid,
                        entry.concept,
                        entry.source,
                        entry.method or NO_METHOD,
                        entry.prompt_kind or "",
                        entry.cls,
                        judge_concept,
                        "" if not np.isfinite(prob) else f"{prob:.6g}",
                        int(prediction.present[row, col]) if valid else "",  # no judgement is not "absent"
                    ]
                    + ["" if not np.isfinite(v[row]) else f"{v[row]:.6g}" for v in details.values()]
                )
    for data_concept, judge_concept in evaluation.pairs:
        col = prediction.concepts.index(judge_concept)
        rows = [i for i, e in enumerate(entries) if e.concept == data_concept and prediction.valid[i, col]]
        targets = np.array([entries[i].cls for i in rows])
        probs = prediction.probabilities[rows, col]
        curves = {ALL: (targets, probs)}
        sources = np.array([entries[i].source for i in rows])
        for source in sorted(set(sources)):
            curves[source] = (targets[sources == source], probs[sources == source])
        paths[f"roc_{data_concept}"] = roc_plot(curves, out / f"roc_{data_concept}.png", f"{data_concept}: ROC")
        paths[f"reliability_{data_concept}"] = reliability_plot(
            targets, probs, out / f"reliability_{data_concept}.png", f"{data_concept}: reliability"
        )
    return paths


def _cell(metric: dict) -> str:
    if metric["value"] is None:
        return "-"
    if metric["low"] is None:
        return f"{metric['value']:.3f}"
    return f"{metric['value']:.3f} [{metric['low']:.3f}, {metric['high']:.3f}]"


def _text_table(lines: list[tuple[str, ...]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def format_holdout(holdout: dict) -> str:
    """A plain-text table: per concept, the held-out and seen methods' n, accuracy, F1, AUROC and ECE, and the gap."""
    names = ("accuracy", "f1", "auroc", "ece")
    lines = [("concept", "methods", "n", *names)]
    for row in holdout["rows"]:
        lines.append(
            (
                row["concept"],
                "held out: " + ",".join(holdout["methods"]),
                str(row["held_out"]["n"]),
                *(_cell(row["held_out"]["metrics"][k]) for k in names),
            )
        )
        lines.append(
            (
                row["concept"],
                "seen: " + ",".join(row["seen_methods"]),
                str(row["seen"]["n"]),
                *(_cell(row["seen"]["metrics"][k]) for k in names),
            )
        )
        lines.append((row["concept"], "gap (seen - held out)", "", *(_cell(row["gap"][k]) for k in names)))
    note = f"held-out methods ({holdout['chosen_by']}): {', '.join(holdout['methods'])}"
    if holdout["seen_in_training"]:
        note += f"; the judge's training did include {', '.join(holdout['seen_in_training'])}"
    return note + "\n" + _text_table(lines)


def format_rows(report: dict) -> str:
    """A plain-text table of every group: n, accuracy, F1, AUROC and ECE with their intervals."""
    cell = _cell
    header = ("concept", "source", "method", "n", "accuracy", "f1", "auroc", "ece")
    lines = [header]
    for row in report["rows"]:
        m = row["metrics"]
        lines.append((row["concept"], row["source"], row["method"], str(row["n"]), *(cell(m[k]) for k in header[4:])))
    return _text_table(lines)
