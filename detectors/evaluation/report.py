"""The evaluation report: ``report.json`` (every number with n and CI, configs, versions), ``report.md``,
a radar chart and per-aspect bars (scores normalised to [0, 1] as documented below), sample grids.

``report.json`` is the evaluation's output; :func:`markdown` is the one rendering of it. ``report.md`` is
that rendering, and the evaluation card (``cards/eval_card.py``) embeds ``report.md`` under its own front
matter and text, so the two never show different columns.

Normalisation (higher is better on every axis):
* forgetting: the forgetting rate itself;
* preservation: 1 - LPIPS (paired), clipped to [0, 1];
* quality: 1 / (1 + FID / 100);
* robustness: 1 - attack success rate over all attacks;
* efficiency: 1 - share of parameters changed.
"""

from __future__ import annotations

import json
from pathlib import Path

from dataigm.files import atomic_write_text
from dataigm.markdown import escape, image, table, with_ci
from detectors.figures import agg_figure

NORMALISATION = {
    "forgetting": "forgetting rate",
    "preservation": "1 - paired LPIPS, clipped to [0, 1]",
    "quality": "1 / (1 + FID / 100)",
    "robustness": "1 - attack success rate (all attacks)",
    "efficiency": "1 - share of parameters changed",
}
# (column, path in a model's row of report.json); each cell is {value, ci: [low, high], n}
COLUMNS = (
    ("forgetting ↑", ("forgetting", "overall")),
    ("CSDR paired ↓", ("csdr", "paired")),
    ("CSDR all pairs ↓", ("csdr", "all_pairs")),
    ("LPIPS paired ↓", ("lpips", "paired")),
    ("LPIPS all pairs ↓", ("lpips", "all_pairs")),
    ("FID ↓", ("fid", "fid")),
    ("ASR ↓", ("robustness", "overall")),
    ("person rate", ("person_rate",)),
)
PLOT_PATTERNS = ("radar-*.png", "bars-*.png", "grid-*.png")  # the order of figures in report.md (the card reads it)


def _value(entry: dict | None, *path: str):
    for key in path:
        if not isinstance(entry, dict) or key not in entry:
            return None
        entry = entry[key]
    return entry


def normalised_scores(report: dict) -> dict:
    """``{concept: {model: {axis: score in [0, 1] or None}}}`` by :data:`NORMALISATION`."""
    out: dict = {}
    for concept, by_model in report["concepts"].items():
        out[concept] = {}
        for model, row in by_model.items():
            lp = _value(row, "lpips", "paired", "value")
            fid = _value(row, "fid", "fid", "value")
            asr = _value(row, "robustness", "overall", "value")
            changed = _value(report["efficiency"].get(model), "share_changed")
            out[concept][model] = {
                "forgetting": _value(row, "forgetting", "overall", "value"),
                "preservation": None if lp is None else min(1.0, max(0.0, 1 - lp)),
                "quality": None if fid is None else 1 / (1 + max(fid, 0.0) / 100),
                "robustness": None if asr is None else 1 - asr,
                "efficiency": None if changed is None else 1 - changed,
            }
    return out


def _walk(entry, path=()):
    """Every dict inside ``entry`` with its path of keys."""
    if isinstance(entry, dict):
        yield path, entry
        for key, value in entry.items():
            yield from _walk(value, (*path, key))


def _excluded(excluded) -> list[str]:
    """``["excluded: nan_judgement=2"]`` for the items left out of n (nothing when none was)."""
    counts = excluded if isinstance(excluded, dict) else {"items": excluded or 0}
    shown = ", ".join(f"{reason}={count}" for reason, count in sorted(counts.items()) if count)
    return [f"excluded: {shown}"] if shown else []


def cell(entry, metric: dict | None = None) -> str:
    """A report value as ``value [low, high] (n=N)``; ``skipped: <reason>`` when it (or its whole metric) was.

    Extra set sizes (keys ``n_*``, e.g. the reference set of FID) and ``excluded`` follow ``n``; ``-`` means
    the metric does not apply (e.g. person rate of a concept about no person).
    """
    for holder in (metric, entry):
        if isinstance(holder, dict) and holder.get("skipped"):
            return escape(f"skipped: {holder['skipped']}")
    if not isinstance(entry, dict):
        return "-"
    if entry.get("value") is None:
        return "no images (n=0)" if entry.get("n") == 0 else "-"
    low, high = (entry.get("ci") or [None, None])[:2]
    sizes = [f"n={entry['n']}"] if entry.get("n") is not None else []
    sizes += [f"{k}={v}" for k, v in sorted(entry.items()) if k.startswith("n_") and v is not None]
    sizes += _excluded(entry.get("excluded"))
    return with_ci(entry["value"], low, high) + (f" ({', '.join(sizes)})" if sizes else "")


def interval_rules(report: dict) -> list[str]:
    """Lines stating how each interval of the report was made.

    Proportions and means follow the fixed rules of :mod:`detectors.stats`; any metric that states
    its own rule (a ``ci_rule`` field) is listed with it, and FID says when it has no interval.
    """
    stated: dict[str, set[str]] = {}
    fid_has_ci = False
    for by_model in report["concepts"].values():
        for row in by_model.values():
            for metric, entry in row.items():
                for _, inner in _walk(entry):
                    if inner.get("ci_rule"):
                        stated.setdefault(metric, set()).add(str(inner["ci_rule"]))
                    if metric == "fid" and (inner.get("ci") or [None])[0] is not None:
                        fid_has_ci = True
    lines = [
        "Every value is followed by its 95% interval and its number of images (or pairs).",
        "* forgetting and ASR: Wilson score intervals over prompts (images of one prompt are not independent: "
        "effective n = images / design effect, t quantile with prompts - 1 degrees of freedom); they estimate the "
        "rate over the population of prompts the prompt set is a sample of, each image rendered with a random seed;",
        "* person rate: Wilson score interval over images;",
        "* means (CSDR, LPIPS): a percentile bootstrap over images; for the all-pairs values the images of "
        "both sides are resampled, not the N² pairs;",
    ]
    for metric, rules in sorted(stated.items()):
        lines.append(f"* {metric}: " + "; ".join(sorted(rules)) + ";")
    if "fid" not in stated:
        lines.append(
            "* FID: "
            + ("an interval as given in report.json" if fid_has_ci else "no interval (one value from two whole sets)")
            + ";"
        )
    lines[-1] = lines[-1].rstrip(";") + "."
    return lines


def notes(report: dict) -> list[str]:
    """Warnings the metrics attached to their values (``warning``/``warnings`` fields), one line each."""
    out = []
    for concept, by_model in report["concepts"].items():
        for model, row in by_model.items():
            for metric, entry in row.items():
                for path, inner in _walk(entry, (metric,)):
                    for text in [inner.get("warning"), *(inner.get("warnings") or [])]:
                        if text:
                            out.append(f"* {concept} / {model} / {'.'.join(path)}: {text}")
    return out


def _concept(concept: str, by_model: dict, plots: list[str]) -> str:
    rows = [
        (model, *(cell(_value(row, *path), row.get(path[0])) for _, path in COLUMNS))
        for model, row in by_model.items()
    ]
    parts = [f"## {concept}", table(("model", *(name for name, _ in COLUMNS)), rows)]
    rules = {}
    for row in by_model.values():
        for metric in ("fid", "lpips"):
            if _value(row, metric, "rule"):
                rules.setdefault(metric.upper(), row[metric]["rule"])
        if _value(row, "csdr", "text"):
            rules.setdefault("CSDR text", row["csdr"]["text"])
    if rules:
        parts.append("Compared: " + "; ".join(f"{k}: {v}" for k, v in rules.items()) + ".")
    for title, metric, part in (
        ("Attack success rate per attack", "robustness", "by_attack"),
        ("Forgetting per sub-theme", "forgetting", "by_subtheme"),
    ):
        names = sorted({n for row in by_model.values() for n in (_value(row, metric, part) or {})})
        if names:
            rows = [(m, *(cell(_value(r, metric, part, n)) for n in names)) for m, r in by_model.items()]
            parts.append(f"{title}:\n\n" + table(("model", *names), rows))
    parts += _paper_asr(by_model)
    skipped = [
        f"- {metric} of `{model}`: {entry['skipped']}"
        for model, row in by_model.items()
        for metric, entry in row.items()
        if isinstance(entry, dict) and entry.get("skipped")
    ]
    if skipped:
        parts.append("Not measured:\n\n" + "\n".join(skipped))
    if plots:
        parts.append(" ".join(image(name, Path(name).stem.replace("-", " ")) for name in plots))
    return "\n\n".join(parts)


def _paper_asr(by_model: dict) -> list[str]:
    """The paper's per-prompt ASR beside ours (per image), each with the definition report.json states."""
    rows, definitions = [], {}
    for model, row in by_model.items():
        ours = _value(row, "robustness", "definition")
        if ours:
            definitions.setdefault("ASR (ours: the ASR column and the per-attack table)", ours)
        for method, entry in sorted((_value(row, "robustness", "paper") or {}).items()):
            rows.append((model, method, cell(entry.get("pre_attack"), entry), cell(entry.get("post_attack"), entry)))
            for name, key in (("pre-attack ASR", "pre_attack"), ("post-attack ASR", "post_attack")):
                if _value(entry, key, "definition"):
                    definitions.setdefault(f"{name} (UnlearnDiffAtk, per prompt)", entry[key]["definition"])
    parts = []
    if rows:
        header = ("model", "attack", "pre-attack ASR ↓", "post-attack ASR ↓")
        parts.append(
            "Attack success rate as UnlearnDiffAtk counts it (one outcome per prompt):\n\n" + table(header, rows)
        )
    if definitions:
        parts.append("Definitions:\n\n" + "\n".join(f"- {name}: {text}." for name, text in definitions.items()))
    return parts


def _efficiency(report: dict) -> str:
    rows = []
    for model, eff in report.get("efficiency", {}).items():
        share = eff.get("share_changed")
        rows.append(
            (
                model,
                escape(eff.get("note") or "-") if share is None else f"{share:.4%}",
                f"{eff['changed']} / {eff['total']}" if eff.get("total") else "-",
                eff.get("checkpoint_bytes", "-"),
                "-" if eff.get("runtime_s") is None else eff["runtime_s"],
            )
        )
    header = ("model", "parameters changed", "changed / total", "checkpoint bytes", "runtime (s)")
    return "## Efficiency\n\n" + table(header, rows)


def _normalised(report: dict) -> str:
    rules = report.get("normalisation") or NORMALISATION
    scores = report.get("normalised") or normalised_scores(report)
    parts = ["## Scores of the charts", "Each axis is scaled to [0, 1], 1 = best:"]
    parts.append("\n".join(f"- {axis}: {rule}" for axis, rule in rules.items()))
    rows = [
        (concept, model, *("-" if row.get(a) is None else f"{row[a]:.3f}" for a in rules))
        for concept, by_model in scores.items()
        for model, row in by_model.items()
    ]
    if rows:
        parts.append(table(("concept", "model", *rules), rows))
    return "\n\n".join(parts)


def plots_of(concept: str, plots: list[str]) -> list[str]:
    """The chart and grid files of one concept (``<kind>-<concept>[-<axis>].png``) among ``plots``."""
    return [p for p in plots if p.removesuffix(".png").split("-")[1] == concept]


def markdown(report: dict, plots: list[str] | None = None) -> str:
    """The one rendering of ``report.json``: ``report.md``, which the evaluation card embeds.

    Args:
        report: the content of ``report.json``.
        plots: chart and grid file names beside the report (linked under their concept).
    """
    plots = plots or []
    parts = [
        "# Unlearning evaluation (EvalIGMU)",
        f"Judge: `{report['judge']['spec']}`. Original model: `{report['original']}`.",
    ]
    parts += [
        _concept(concept, by_model, plots_of(concept, plots)) for concept, by_model in report["concepts"].items()
    ]
    parts.append("## Intervals\n\n" + "\n".join(report.get("intervals") or interval_rules(report)))
    parts.append(_efficiency(report))
    warnings = notes(report)
    if warnings:
        parts.append("## Warnings\n\n" + "\n".join(warnings))
    parts.append(_normalised(report))
    return "\n\n".join(parts) + "\n"


def plots(report: dict, out: Path) -> list[Path]:
    """Per concept, a radar chart (of the axes some model has, when there are three) and a grouped bar chart
    (:func:`radar_figure`, :func:`bars_figure`); a skipped number is marked, never drawn as 0."""
    paths = []
    for concept, by_model in normalised_scores(report).items():
        for kind, figure in (("radar", radar_figure(concept, by_model)), ("bars", bars_figure(concept, by_model))):
            if figure is not None:
                paths.append(out / f"{kind}-{concept}.png")
                figure.savefig(paths[-1], dpi=100, metadata={"Software": None})
    return paths


def radar_figure(concept: str, by_model: dict):
    """The models' normalised scores on the axes some model has (None with fewer than three such axes);
    the axes no model has are named in the title."""
    import numpy as np

    shown = [a for a in NORMALISATION if any(row[a] is not None for row in by_model.values())]
    if len(shown) < 3:
        return None
    skipped = [a for a in NORMALISATION if a not in shown]
    figure = agg_figure((5, 5))
    ax = figure.add_subplot(polar=True)
    angles = np.linspace(0, 2 * np.pi, len(shown), endpoint=False).tolist()
    for model, row in by_model.items():
        values = [np.nan if row[a] is None else row[a] for a in shown]
        ax.plot(angles + angles[:1], values + values[:1], label=model)
        ax.fill(angles + angles[:1], np.nan_to_num(values + values[:1]), alpha=0.1)
    ax.set_xticks(angles, shown)
    ax.set_ylim(0, 1)
    ax.set_title(f"{concept} (1 = best)" + (f"\nskipped: {', '.join(skipped)}" if skipped else ""))
    ax.legend(loc="lower right", fontsize=7)
    return figure


def bars_figure(concept: str, by_model: dict):
    """One group of bars per axis, one bar per model; a skipped number has no bar but the word "skipped"."""
    import textwrap

    import numpy as np

    axes_names, models = list(NORMALISATION), list(by_model)
    figure = agg_figure((1.6 * len(axes_names) + 1, 3.8))
    figure.subplots_adjust(bottom=0.22, right=0.8)
    ax = figure.add_subplot()
    width = 0.8 / len(models)
    for j, model in enumerate(models):
        xs = np.arange(len(axes_names)) + (j - (len(models) - 1) / 2) * width
        values = [by_model[model][a] for a in axes_names]
        ax.bar(xs, [np.nan if v is None else v for v in values], width, label=model, color=f"C{j}")
        for x, value in zip(xs, values, strict=True):
            if value is None:
                ax.text(x, 0.02, "skipped", rotation=90, ha="center", va="bottom", fontsize=6, color="grey")
    labels = [textwrap.fill(f"{a} ({NORMALISATION[a]})", 20) for a in axes_names]
    ax.set_xticks(range(len(axes_names)), labels, fontsize=6)
    ax.set_xlim(-0.5, len(axes_names) - 0.5)
    ax.set_ylim(0, 1)
    ax.set_title(f"{concept} (1 = best)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)
    return figure


def _json_default(value: object):
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    raise TypeError(f"report.json cannot hold a {type(value).__name__}: {value!r}")


def sample_grid(images, models: list[str], concept: str, out: Path, samples: int = 4) -> Path | None:
    """Forget-prompt images with the same prompt and seed, one column per model."""
    from PIL import Image

    by_key: dict = {}
    for im in images:
        if im.concept == concept and im.kind == "forget":
            by_key.setdefault((im.family, im.sample), {})[im.model] = im
    rows = [v for _, v in sorted(by_key.items()) if all(m in v for m in models)][:samples]
    if not rows:
        return None
    size = 128
    grid = Image.new("RGB", (size * len(models), size * len(rows)), "white")
    for r, row in enumerate(rows):
        for c, model in enumerate(models):
            grid.paste(row[model].image().resize((size, size)), (c * size, r * size))
    path = out / f"grid-{concept}.png"
    grid.save(path)
    return path


def write_report(report: dict, out: str | Path, images=None, grid_samples: int = 4) -> dict[str, Path]:
    """Write report.json, report.md, charts and grids into ``out``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        **report,
        "normalised": normalised_scores(report),
        "normalisation": NORMALISATION,
        "intervals": interval_rules(report),
    }
    paths = {"json": out / "report.json", "markdown": out / "report.md"}
    # No default=str: an object JSON cannot write is a bug to raise, not a repr (with its address) to keep.
    text = json.dumps(report, indent=2, sort_keys=True, default=_json_default) + "\n"
    atomic_write_text(paths["json"], text)
    report = json.loads(text)  # report.md renders report.json as written (its key order included), nothing else
    written = []
    for i, path in enumerate(plots(report, out)):
        paths[f"plot{i}"] = path
        written.append(path)
    if images is not None:
        for concept in report["concepts"]:
            grid = sample_grid(images, report["models"], concept, out, grid_samples)
            if grid is not None:
                paths[f"grid-{concept}"] = grid
                written.append(grid)
    names = [n for pattern in PLOT_PATTERNS for n in sorted(p.name for p in written if Path(p).match(pattern))]
    atomic_write_text(paths["markdown"], markdown(report, names))
    return paths
