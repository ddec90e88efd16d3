"""The agreement card: how far several judges agree with each other and with the labels, as Markdown.

Built from the folder written by ``dataigm judge agree`` (``agreement.json`` and ``agreement_<concept>.png``),
without importing ``detectors``. Every number is read from ``agreement.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

from dataigm.files import atomic_write_text

from .markdown import escape, image, table, with_ci

ALL = "all"  # the group name of all images, all sources or all methods (detectors.audit.judge_eval.ALL)
CARD_NAME = "agreement.md"


def read_agreement(folder: str | Path) -> dict:
    """The ``agreement.json`` of a ``dataigm judge agree`` folder.

    Raises:
        ValueError: the folder has no ``agreement.json``.
    """
    path = Path(folder) / "agreement.json"
    if not path.is_file():
        raise ValueError(f"{folder} holds no agreement.json (write it with dataigm judge agree --out {folder})")
    return json.loads(path.read_text(encoding="utf-8"))


def agreement_plots(report: dict, folder: str | Path) -> list[Path]:
    """The kappa-matrix plots (``agreement_<concept>.png``) of ``report`` that exist in ``folder``."""
    paths = (Path(folder) / f"agreement_{concept}.png" for concept in report["raters"])
    return [path for path in paths if path.is_file()]


def _metric(cell: dict) -> str:
    low, high = cell["ci"]
    return with_ci(cell["value"], low, high)


def _kappa(cell: dict) -> str:
    if cell["value"] is None:
        return f"- ({escape(cell.get('reason', 'undefined'))})"
    if cell.get("ci_skipped"):  # too few images for an interval that covers: the value alone, and why
        return f"{cell['value']:.3f} (interval {escape(cell['ci_skipped'])})"
    undefined = cell.get("undefined_resamples")
    return _metric(cell) + (f" ({undefined} undefined resamples)" if undefined else "")


def agreement_section(report: dict, folder: str | Path | None = None, level: int = 2) -> str:
    """The Markdown of the agreement: per concept the kappa matrix, every pair over all images, then per group.

    Args:
        report: the content of ``agreement.json``.
        folder: where the plots are; a plot that exists there is linked (relative to the card).
        level: the heading level of the section.
    """
    h = "#" * level
    data = report["data"]
    parts = [
        f"{h} Agreement between judges",
        f"Split `{data['split']}` of `{escape(data['name'])}` (manifest sha256 `{data['manifest_sha256'][:12]}`), "
        f"{report['images']} images. Cohen's kappa with a {report['bootstrap']['resamples']}-resample BCa "
        "bootstrap interval over images joined with the Wilson interval of the disagreement rate mapped to kappa "
        "(no interval below 50 images or 10 images of a class per rater: none covers there); raw agreement with its Wilson interval. `labels` is the dataset's labels "
        "taken as one more rater. A judgement that is NaN or of an unreadable image is left out of every pair "
        "it is in (column *left out*).",
    ]
    excluded = {name: sum(c.values()) for name, c in report["excluded_nan"].items() if sum(c.values())}
    if excluded or report["unreadable_images"]:
        parts.append(
            f"Unreadable images: {report['unreadable_images']}. NaN or out-of-range judgements: "
            + (", ".join(f"`{escape(n)}` {k}" for n, k in excluded.items()) or "none")
            + "."
        )
    plots = {path.name for path in agreement_plots(report, folder)} if folder is not None else set()
    for concept, raters in report["raters"].items():
        parts.append(f"{h}# {concept}")
        plot = f"agreement_{concept}.png"
        if plot in plots:
            parts.append(image(plot, f"{concept}: kappa matrix"))
        rows = [r for r in report["rows"] if r["concept"] == concept]
        overall = [r for r in rows if r["source"] == ALL and r["method"] == ALL]
        parts.append(
            table(
                ("rater", "rater", "n", "left out", "agreement", "kappa"),
                [
                    (f"`{escape(r['a'])}`", f"`{escape(r['b'])}`", r["n"], r["excluded"], _metric(r["agreement"]))
                    + (_kappa(r["kappa"]),)
                    for r in overall
                ],
            )
        )
        groups = [r for r in rows if not (r["source"] == ALL and r["method"] == ALL)]
        if groups:
            parts.append(f"By source and unlearning method ({', '.join(f'`{escape(r)}`' for r in raters)}):")
            parts.append(
                table(
                    ("source", "method", "rater", "rater", "n", "agreement", "kappa"),
                    [
                        (r["source"], r["method"], f"`{escape(r['a'])}`", f"`{escape(r['b'])}`", r["n"])
                        + (_metric(r["agreement"]), _kappa(r["kappa"]))
                        for r in groups
                    ],
                )
            )
    queue = report["queue"]
    reasons = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in queue.get("reasons", {}).items())
    parts.append(
        f"{h}# Images to review\n\n{queue['images']} image(s) in the review queue"
        + (f" ({reasons})" if reasons else "")
        + ": check them with `dataigm review ROOT --queue queue.jsonl`, then apply the decisions with "
        "`dataigm curate apply ROOT --decisions FILE`."
    )
    return "\n\n".join(parts)


def write_agreement_card(folder: str | Path) -> Path:
    """Write ``agreement.md`` next to ``agreement.json`` in ``folder``; returns its path."""
    report = read_agreement(folder)
    path = Path(folder) / CARD_NAME
    atomic_write_text(path, "# Judge agreement\n\n" + agreement_section(report, folder) + "\n")
    return path
