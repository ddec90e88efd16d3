"""The evaluation report: ``report.json`` (every number with n and CI, configs, versions), ``report.md``,
a radar chart and per-aspect bars (scores normalised to [0, 1] as documented below), sample grids.

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

NORMALISATION = {
    "forgetting": "forgetting rate",
    "preservation": "1 - paired LPIPS, clipped to [0, 1]",
    "quality": "1 / (1 + FID / 100)",
    "robustness": "1 - attack success rate (all attacks)",
    "efficiency": "1 - share of parameters changed",
}


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


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def cell(entry, metric: dict | None = None) -> str:
    """A report value as ``value [low, high] (n=N)``; ``skipped: <reason>`` when it (or its whole metric) was.

    Extra set sizes (keys ``n_*``, e.g. the reference set of FID) and ``excluded`` follow ``n``; ``-`` means
    the metric does not apply (e.g. person rate of a concept about no person).
    """
    for holder in (metric, entry):
        if isinstance(holder, dict) and holder.get("skipped"):
            return _escape(f"skipped: {holder['skipped']}")
    if not isinstance(entry, dict):
        return "-"
    if entry.get("value") is None:
        return "no images (n=0)" if entry.get("n") == 0 else "-"
    low, high = (entry.get("ci") or [None, None])[:2]
    ci = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
    sizes = [f"n={entry['n']}"] if entry.get("n") is not None else []
    sizes += [f"{k}={v}" for k, v in sorted(entry.items()) if k.startswith("n_") and v is not None]
    sizes += _excluded(entry.get("excluded"))
    return f"{entry['value']:.3f}{ci}" + (f" ({', '.join(sizes)})" if sizes else "")


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
        "* proportions (forgetting, ASR, person rate): Wilson score intervals;",
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


def markdown(report: dict) -> str:
    lines = [
        "# Unlearning evaluation (EvalIGMU)",
        "",
        f"Judge: `{report['judge']['spec']}`. Original model: `{report['original']}`.",
        "",
    ]
    for concept, by_model in report["concepts"].items():
        lines += [
            f"## {concept}",
            "",
            "| model | forgetting ↑ | CSDR paired ↓ | CSDR all pairs ↓ | LPIPS paired ↓ | FID ↓ | ASR ↓ | person rate |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for model, row in by_model.items():
            cells = [
                cell(_value(row, "forgetting", "overall"), row.get("forgetting")),
                cell(_value(row, "csdr", "paired"), row.get("csdr")),
                cell(_value(row, "csdr", "all_pairs"), row.get("csdr")),
                cell(_value(row, "lpips", "paired"), row.get("lpips")),
                cell(_value(row, "fid", "fid"), row.get("fid")),
                cell(_value(row, "robustness", "overall"), row.get("robustness")),
                cell(row.get("person_rate")),
            ]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "## Efficiency",
        "",
        "| model | parameters changed | checkpoint bytes | runtime (s) |",
        "|---|---|---|---|",
    ]
    for model, eff in report["efficiency"].items():
        share = eff.get("share_changed")
        shown = f"{share:.4%}" if share is not None else _escape(eff.get("note") or "-")
        lines.append(f"| {model} | {shown} | {eff.get('checkpoint_bytes', '-')} | {eff.get('runtime_s') or '-'} |")
    lines += ["", "## Intervals", "", *(report.get("intervals") or interval_rules(report))]
    warnings = notes(report)
    if warnings:
        lines += ["", "## Warnings", "", *warnings]
    lines += ["", "## Normalisation of the charts", ""] + [f"* {axis}: {rule}" for axis, rule in NORMALISATION.items()]
    return "\n".join(lines) + "\n"


def plots(report: dict, out: Path) -> list[Path]:
    """A radar chart per concept and a bar chart per axis (models side by side)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    scores = normalised_scores(report)
    axes_names = list(NORMALISATION)
    paths = []
    for concept, by_model in scores.items():
        angles = np.linspace(0, 2 * np.pi, len(axes_names), endpoint=False).tolist()
        fig, ax = plt.subplots(figsize=(5, 5), subplot_kw={"polar": True})
        for model, row in by_model.items():
            values = [row[a] if row[a] is not None else 0.0 for a in axes_names]
            ax.plot(angles + angles[:1], values + values[:1], label=model)
            ax.fill(angles + angles[:1], values + values[:1], alpha=0.1)
        ax.set_xticks(angles, axes_names)
        ax.set_ylim(0, 1)
        ax.set_title(f"{concept} (1 = best)")
        ax.legend(loc="lower right", fontsize=7)
        paths.append(out / f"radar-{concept}.png")
        fig.savefig(paths[-1], dpi=100, metadata={"Software": None})
        plt.close(fig)
        for axis in axes_names:
            fig, ax = plt.subplots(figsize=(5, 3))
            models = list(by_model)
            ax.bar(models, [by_model[m][axis] or 0.0 for m in models])
            ax.set_ylim(0, 1)
            ax.set_title(f"{concept}: {axis} ({NORMALISATION[axis]})", fontsize=8)
            paths.append(out / f"bars-{concept}-{axis}.png")
            fig.savefig(paths[-1], dpi=100, metadata={"Software": None})
            plt.close(fig)
    return paths


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
    atomic_write_text(paths["json"], json.dumps(report, indent=2, sort_keys=True, default=_json_default) + "\n")
    atomic_write_text(paths["markdown"], markdown(report))
    for i, path in enumerate(plots(report, out)):
        paths[f"plot{i}"] = path
    if images is not None:
        for concept in report["concepts"]:
            grid = sample_grid(images, report["models"], concept, out, grid_samples)
            if grid is not None:
                paths[f"grid-{concept}"] = grid
    return paths
