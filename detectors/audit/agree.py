"""How far judges agree with each other and with the labels (``dataigm judge agree``).

Every judge judges the same images of a split (through the shard index and each judge's DataLoader path,
:meth:`Judge.predict_entries`). For each dataset concept, every pair of raters (the judges that cover the
concept, and the dataset's labels as one more rater) gets Cohen's kappa (scikit-learn's
``cohen_kappa_score``) with an interval that covers (:func:`detectors.stats.kappa_with_ci`: a BCa bootstrap
over images joined with the Wilson interval of the disagreement rate; refused, with the reason, below 50 images
or 10 images of a class per rater), and the raw agreement with its Wilson interval, over all images, per source, per unlearning method and per source x method. A judgement
that is NaN, outside [0, 1] or of an unreadable image is left out of every pair it is in and counted.

Outputs (:func:`write_agreement`)::

    agreement.json            every pair's kappa and agreement per group, with n, intervals and exclusions
    queue.jsonl               the images to review: the judges disagree, or they agree against the label
    agreement_<concept>.png   the kappa matrix of the raters over all images
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataigm.review.queue import write_queue
from detectors.audit.judge_eval import ALL, NO_METHOD, check_eval_options, concept_pairs
from detectors.data import Entry, available_splits, build_index, dataset_revision
from detectors.judges.base import Judge
from detectors.stats import kappa_with_ci, proportion

logger = logging.getLogger(__name__)

LABELS = "labels"  # the dataset's labels, compared with the judges as one more rater
# why an image is in the review queue
JUDGES_DISAGREE = "judges_disagree"
AGAINST_LABEL = "judges_agree_against_label"
KAPPA_UNDEFINED = "undefined: both raters gave one and the same class to every image (expected agreement is 1)"


@dataclass
class Agreement:
    """The judgements of several judges on one split and the agreement computed from them.

    Attributes:
        report: what ``agreement.json`` holds.
        entries: the judged images, in index order.
        concepts: the dataset concept of each judge's columns, ``{judge: {data concept: judge concept}}``.
        probabilities: ``{judge: (N,)}`` probability of each image's own concept (NaN where not judged).
        decisions: ``{judge: (N,)}`` 0/1 decisions, -1 where there is no valid judgement.
        queue: the review queue records.
    """

    report: dict
    entries: list[Entry]
    concepts: dict[str, dict[str, str]]
    probabilities: dict[str, np.ndarray]
    decisions: dict[str, np.ndarray]
    queue: list[dict]


def check_judge_names(names: Sequence[str]) -> None:
    """Refuse fewer than two judges, a judge given twice, or one named like the labels' rater.

    Raises:
        ValueError: naming the bad value.
    """
    names = list(names)
    if len(names) < 2:
        raise ValueError(f"--judges needs at least two judges to compare; got {len(names)} ({', '.join(names)})")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"Judge(s) {', '.join(repeated)} given more than once in --judges; give each judge once")
    if LABELS in names:
        raise ValueError(f"A judge cannot be named {LABELS!r}: that name is the dataset's labels in the report")


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cohen's kappa of two 0/1 raters (scikit-learn); None when it is undefined (expected agreement 1)."""
    from sklearn.metrics import cohen_kappa_score

    a, b = np.asarray(a, dtype=int), np.asarray(b, dtype=int)
    if a.size == 0:
        return None
    expected = a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean())
    if np.isclose(expected, 1.0):
        return None
    return float(cohen_kappa_score(a, b, labels=[0, 1]))


def pair_agreement(a: np.ndarray, b: np.ndarray, n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> dict:
    """Kappa and raw agreement of two raters over the rows where both judged (decision 0 or 1; -1: none).

    Returns:
        ``n`` (rows both judged), ``excluded`` (rows where either did not), ``agreement`` (share with its
        Wilson interval) and ``kappa`` (``value`` from scikit-learn, ``ci`` and ``ci_rule`` from
        :func:`detectors.stats.kappa_with_ci`, ``undefined_resamples`` beside the interval, ``ci_skipped`` when
        too few images or too few of a class give no interval that covers, and ``reason`` when kappa itself is
        undefined).
    """
    a, b = np.asarray(a), np.asarray(b)
    both = (a >= 0) & (b >= 0)
    a, b = a[both].astype(int), b[both].astype(int)
    kappa = {"value": cohen_kappa(a, b)}
    if kappa["value"] is None:
        kappa |= {"ci": [None, None], "reason": "no image judged by both" if a.size == 0 else KAPPA_UNDEFINED}
    else:
        interval = kappa_with_ci(a, b, n_boot, ci, seed)
        kappa |= {k: v for k, v in interval.items() if k != "value"}
    return {
        "n": int(a.size),
        "excluded": int((~both).sum()),
        "agreement": proportion(int((a == b).sum()), int(a.size)),
        "kappa": kappa,
    }


def _slices(entries: Sequence[Entry]) -> list[tuple[str, str, np.ndarray]]:
    """``(source, method, rows)``: all images, each source, each method, each source x method with images."""
    sources = np.array([e.source for e in entries])
    methods = np.array([e.method or NO_METHOD for e in entries])
    out = [(ALL, ALL, np.ones(len(entries), dtype=bool))]
    out += [(s, ALL, sources == s) for s in sorted(set(sources))]
    out += [(ALL, m, methods == m) for m in sorted(set(methods))]
    out += [(s, m, (sources == s) & (methods == m)) for s in sorted(set(sources)) for m in sorted(set(methods))]
    seen, unique = set(), []
    for source, method, rows in out:  # a cell equal to a coarser one (one source, one method) says nothing new
        key = rows.tobytes()
        if rows.any() and key not in seen:
            seen.add(key)
            unique.append((source, method, np.flatnonzero(rows)))
    return unique


def judge_agreement(
    judges: Mapping[str, Judge],
    root: str | Path,
    split: str = "test",
    concept: str | None = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    batch_size: int = 32,
    num_workers: int | None = None,
    progress: bool = False,
) -> Agreement:
    """Judge the images of ``split`` with every judge and measure how far the judges and the labels agree.

    Args:
        judges: ``{name: judge}``; the name (usually the spec) is the judge's name in the report and the queue.
        root: a DataIGM root.
        split: the split to measure on.
        concept: the dataset concept for one-concept judges whose concept the data does not name.
        n_boot, ci, seed: bootstrap resamples, confidence level and seed of the kappa intervals.
        batch_size, num_workers, progress: how the judges read the images (num_workers None: sized to the host,
            :func:`detectors.data.one_pass_workers`).

    Raises:
        ValueError: fewer than two judges, a bad option, a judge that covers no concept of the data.
    """
    check_judge_names(list(judges))
    check_eval_options(root, split, concept, n_boot, ci, batch_size, num_workers)
    everything = build_index(root, split=split)
    if not everything:
        raise ValueError(f"Split {split!r} of {root} has no images; its splits: {', '.join(available_splits(root))}")
    data_concepts = sorted({e.concept for e in everything})
    covered = {name: dict(concept_pairs(j.concepts, data_concepts, concept)) for name, j in judges.items()}
    wanted = sorted({c for pairs in covered.values() for c in pairs})
    entries = [e for e in everything if e.concept in wanted]
    n = len(entries)
    own = np.array([e.concept for e in entries])
    probabilities, decisions = {}, {}
    unreadable = np.zeros(n, dtype=bool)
    excluded_nan: dict[str, dict[str, int]] = {}
    for name, judge in judges.items():
        rows = np.flatnonzero(np.isin(own, list(covered[name])))
        logger.info("%s: judging %d images of %s/%s", name, rows.size, root, split)
        prediction = judge.predict_entries(
            [entries[i] for i in rows], batch_size=batch_size, num_workers=num_workers, progress=progress
        )
        probs, dec = np.full(n, np.nan), np.full(n, -1, dtype=np.int8)
        cols = np.array([judge.concepts.index(covered[name][own[i]]) for i in rows], dtype=int)
        picked = np.arange(rows.size)  # every judge covers at least one concept with images (concept_pairs)
        valid = prediction.valid[picked, cols]
        probs[rows] = prediction.probabilities[picked, cols]
        dec[rows] = np.where(valid, prediction.present[picked, cols], -1)
        unreadable[rows[prediction.unreadable]] = True
        bad_nan = ~valid & ~prediction.unreadable
        excluded_nan[name] = {c: int((bad_nan & (own[rows] == c)).sum()) for c in covered[name]}
        probabilities[name], decisions[name] = probs, dec
    decisions[LABELS] = np.array([e.cls for e in entries], dtype=np.int8)

    rows_out = []
    for data_concept in wanted:
        raters = [name for name in judges if data_concept in covered[name]] + [LABELS]
        mine = np.flatnonzero(own == data_concept)
        subset = [entries[i] for i in mine]
        for source, method, group in _slices(subset):
            idx = mine[group]
            for i, a in enumerate(raters):
                for b in raters[i + 1 :]:
                    row = {"concept": data_concept, "source": source, "method": method, "a": a, "b": b}
                    row |= pair_agreement(decisions[a][idx], decisions[b][idx], n_boot, ci, seed)
                    rows_out.append(row)
    queue = review_queue(entries, judges, covered, probabilities, decisions)
    report = {
        "judges": {name: {**judge.describe(), "concepts_measured": covered[name]} for name, judge in judges.items()},
        "data": {"root": str(root), "split": split, **dataset_revision(root)},
        "bootstrap": {"resamples": n_boot, "ci": ci, "seed": seed},
        "images": n,
        "unreadable_images": int(unreadable.sum()),
        # readable images whose judgement was NaN or outside [0, 1]: left out of every pair of that judge
        "excluded_nan": excluded_nan,
        "raters": {c: [name for name in judges if c in covered[name]] + [LABELS] for c in wanted},
        "queue": {"images": len(queue), "reasons": _count(q["reason"] for q in queue)},
        "rows": rows_out,
    }
    return Agreement(report, entries, covered, probabilities, decisions, queue)


def _count(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))


def review_queue(
    entries: Sequence[Entry],
    judges: Mapping[str, Judge],
    covered: Mapping[str, Mapping[str, str]],
    probabilities: Mapping[str, np.ndarray],
    decisions: Mapping[str, np.ndarray],
) -> list[dict]:
    """The images a person should look at, in index order: the judges that judged it disagree, or all of them
    (two or more) agree with each other and not with the label. Each record names every judge's verdict."""
    queue = []
    for row, entry in enumerate(entries):
        names = [name for name in judges if entry.concept in covered[name]]
        verdicts = {}
        for name in names:
            valid = decisions[name][row] >= 0
            verdicts[name] = {
                "probability": float(probabilities[name][row]) if valid else None,
                "present": bool(decisions[name][row]) if valid else None,
            }
        given = {v["present"] for v in verdicts.values() if v["present"] is not None}
        judged = sum(v["present"] is not None for v in verdicts.values())
        if len(given) > 1:
            reason = JUDGES_DISAGREE
        elif judged >= 2 and given != {bool(entry.cls)}:
            reason = AGAINST_LABEL
        else:
            continue
        queue.append(
            {
                "key": entry.key,
                "shard": entry.shard,
                "concept": entry.concept,
                "source": entry.source,
                "method": entry.method or NO_METHOD,
                "label": int(entry.cls),
                "reason": reason,
                "judges": verdicts,
            }
        )
    return queue


def agreement_matrix(report: dict, concept: str) -> tuple[list[str], np.ndarray]:
    """``(raters, kappa matrix)`` of one concept over all images (1 on the diagonal, NaN where undefined)."""
    raters = report["raters"][concept]
    matrix = np.eye(len(raters))
    for row in report["rows"]:
        if row["concept"] == concept and row["source"] == ALL and row["method"] == ALL:
            i, j = raters.index(row["a"]), raters.index(row["b"])
            value = row["kappa"]["value"]
            matrix[i, j] = matrix[j, i] = np.nan if value is None else value
    return raters, matrix


def agreement_plot(report: dict, concept: str, path: str | Path) -> Path:
    """The kappa matrix of one concept as a heat map with the values written in (matplotlib, Agg)."""
    from detectors.figures import agg_figure

    raters, matrix = agreement_matrix(report, concept)
    short = [r if len(r) <= 28 else r[:25] + "..." for r in raters]
    size = 2.2 + 0.9 * len(raters)
    fig = agg_figure((size + 1.2, size), layout="constrained")
    ax = fig.add_subplot()
    shown = ax.imshow(np.ma.masked_invalid(matrix), vmin=-1, vmax=1, cmap="RdYlGn")
    fig.colorbar(shown, ax=ax, label="Cohen's kappa")
    ax.set_xticks(range(len(raters)), short, rotation=35, ha="right", fontsize="small")
    ax.set_yticks(range(len(raters)), short, fontsize="small")
    for i in range(len(raters)):
        for j in range(len(raters)):
            ax.text(j, i, "-" if np.isnan(matrix[i, j]) else f"{matrix[i, j]:.2f}", ha="center", va="center")
    ax.set_title(f"{concept}: agreement (kappa), all images")
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


def write_agreement(agreement: Agreement, out: str | Path, queue_path: str | Path | None = None) -> dict[str, Path]:
    """Write agreement.json, the review queue and one kappa-matrix plot per concept; returns the paths by name."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"agreement": out / "agreement.json"}
    paths["queue"] = write_queue(agreement.queue, queue_path or out / "queue.jsonl")  # read by dataigm review
    agreement.report["queue"]["path"] = str(paths["queue"])
    paths["agreement"].write_text(json.dumps(agreement.report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    for concept in agreement.report["raters"]:
        paths[f"agreement_{concept}"] = agreement_plot(agreement.report, concept, out / f"agreement_{concept}.png")
    return paths


def format_rows(report: dict) -> str:
    """A plain-text table of every pair and group: n, agreement and kappa with their intervals."""

    def cell(metric: dict) -> str:
        value, (low, high) = metric["value"], metric["ci"]
        if value is None:
            return "-"
        return f"{value:.3f}" if low is None else f"{value:.3f} [{low:.3f}, {high:.3f}]"

    header = ("concept", "source", "method", "a", "b", "n", "agreement", "kappa")
    lines = [header]
    for r in report["rows"]:
        lines.append(
            (
                r["concept"],
                r["source"],
                r["method"],
                r["a"],
                r["b"],
                str(r["n"]),
                cell(r["agreement"]),
                cell(r["kappa"]),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)
