"""Limitations of a judge read off its numbers: where accuracy drops below the overall value, groups too
small to trust, one-class groups, calibration error, sources never measured.

Input: a ``metrics.json`` written by ``dataigm judge eval`` (rows per concept x source x method) or, without
one, the validation metrics in the judge's ``config.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

from dataigm.schema import SOURCES

from .markdown import number

ALL = "all"  # metrics.json: a row over every source or every method
NO_METHOD = "none"  # metrics.json: real and web images have no unlearning method
GAP_POINTS = 5.0  # a group this many accuracy points below the overall value is named in the limitations
SMALL_GROUP = 30  # groups with fewer images are named as uncertain
ECE_LIMIT = 0.05  # a calibration error above this is named


def group_name(source: str, method: str) -> str:
    """How a metrics.json group reads in a sentence."""
    if source == ALL and method == ALL:
        return "all images"
    if method == ALL:
        return f"source `{source}`"
    label = "no unlearning method" if method == NO_METHOD else f"method `{method}`"
    return label if source == ALL else f"source `{source}` with {label}"


@dataclass(frozen=True)
class Group:
    """One row of metrics.json, reduced to what the limitations need."""

    source: str
    method: str
    n: int
    accuracy: float | None
    auroc: float | None
    ece: float | None

    @classmethod
    def of(cls, row: dict) -> Group:
        m = row["metrics"]
        return cls(
            row["source"], row["method"], row["n"], *(m.get(k, {}).get("value") for k in ("accuracy", "auroc", "ece"))
        )

    @property
    def name(self) -> str:
        return group_name(self.source, self.method)


def rows_by_concept(metrics: dict) -> dict[str, list[dict]]:
    """metrics.json rows grouped by concept, in file order (the all/all row first)."""
    by_concept: dict[str, list[dict]] = {}
    for row in metrics["rows"]:
        by_concept.setdefault(row["concept"], []).append(row)
    return by_concept


def concept_limitations(concept: str, rows: list[dict], gap_points: float = GAP_POINTS) -> list[str]:
    """Limitations of one concept read off its metrics.json rows: where accuracy drops, small groups,
    one-class groups, calibration, sources not measured."""
    groups = [Group.of(r) for r in rows]
    overall = next((g for g in groups if g.source == ALL and g.method == ALL), None)
    if overall is None or overall.accuracy is None:
        return []
    others = [g for g in groups if g is not overall and g.accuracy is not None]
    lines = []
    if others:
        lowest = min(others, key=lambda g: (g.accuracy, -g.n))
        gap = (overall.accuracy - lowest.accuracy) * 100
        if gap > 0:
            lines.append(
                f"**{concept}**: accuracy is lowest on {lowest.name} ({number(lowest.accuracy)}, n={lowest.n}), "
                f"{gap:.1f} points below the overall {number(overall.accuracy)} (n={overall.n})."
            )
            below = sorted(
                (g for g in others if (overall.accuracy - g.accuracy) * 100 > gap_points), key=lambda g: g.accuracy
            )
            if below:
                named = ", ".join(
                    f"{g.name} ({number(g.accuracy)}, {(overall.accuracy - g.accuracy) * 100:.1f} points below, n={g.n})"
                    for g in below
                )
                lines.append(f"**{concept}**: more than {gap_points:g} points below the overall accuracy: {named}.")
            else:
                lines.append(
                    f"**{concept}**: no source or method is more than {gap_points:g} points below the overall accuracy."
                )
        else:
            lines.append(
                f"**{concept}**: accuracy is {number(overall.accuracy)} on every source and method measured "
                f"({len(others)} groups); the test split shows no weaker group."
            )
    small = [g for g in [overall, *others] if g.n < SMALL_GROUP]
    if small:
        named = ", ".join(f"{g.name} (n={g.n})" for g in small)
        lines.append(f"**{concept}**: fewer than {SMALL_GROUP} images in {named}: wide intervals, uncertain accuracy.")
    one_class = [g for g in [overall, *others] if g.auroc is None]
    if one_class:
        lines.append(f"**{concept}**: AUROC is undefined (one class only) for {', '.join(g.name for g in one_class)}.")
    if overall.ece is not None and overall.ece > ECE_LIMIT:
        lines.append(
            f"**{concept}**: calibration error {number(overall.ece)} on the test split (above {ECE_LIMIT:g}): "
            "read the probabilities as scores, not frequencies."
        )
    measured = {g.source for g in groups if g.source != ALL}
    missing = [s for s in SOURCES if s not in measured]
    if missing:
        lines.append(
            f"**{concept}**: not measured on {', '.join(f'`{s}`' for s in missing)} images; "
            "its accuracy there is unknown."
        )
    return lines


def limitations(config: dict, metrics: dict | None, gap_points: float = GAP_POINTS) -> list[str]:
    """Every limitation the numbers show (one Markdown bullet text each)."""
    if metrics is None:
        validation = config.get("metrics", {}).get("validation", {})
        if not validation:
            return ["Not measured: no metrics are stored with the judge and no `dataigm judge eval` folder was given."]
        lines = [
            "Measured only on the validation images carved from the training split; accuracy per source and per "
            "unlearning method is unknown. Run `dataigm judge eval` on a test split and rebuild the card with `--eval`."
        ]
        scored = {c: v for c, v in validation.items() if v.get("accuracy") is not None}
        if len(scored) > 1:
            worst = min(scored, key=lambda c: scored[c]["accuracy"])
            lines.append(
                f"Validation accuracy is lowest for **{worst}** ({number(scored[worst]['accuracy'])}, "
                f"n={scored[worst].get('n')})."
            )
        small = [f"{c} (n={v['n']})" for c, v in validation.items() if v.get("n", SMALL_GROUP) < SMALL_GROUP]
        if small:
            lines.append(
                f"Fewer than {SMALL_GROUP} validation images for {', '.join(small)}: the numbers are uncertain."
            )
        return lines
    lines = []
    trained_on = config.get("dataset", {}).get("manifest_sha256")
    measured_on = metrics.get("data", {}).get("manifest_sha256")
    split = metrics.get("data", {}).get("split")
    if trained_on and measured_on == trained_on:
        lines.append(
            f"Measured on split `{split}` of the dataset revision it was trained on; images from other collections "
            "or generators may be judged less accurately."
        )
    elif measured_on:
        lines.append(
            f"Measured on split `{split}` of a dataset revision (`{measured_on[:12]}`) other than its training "
            f"data's (`{(trained_on or 'unknown')[:12]}`)."
        )
    for concept, rows in rows_by_concept(metrics).items():
        lines += concept_limitations(concept, rows, gap_points)
    return lines
