"""``dataigm bench board``: results of one suite version as a leaderboard, ``board.md`` and one static ``board.html``.

Every model of a suite sees the same prompts and seeds, so the board compares them paired
(:mod:`detectors.bench.paired`): each share's rank comes with the percentile interval of its ranks over a paired
bootstrap of the prompts, and every two models with their paired difference (bootstrap interval) and an exact
McNemar p. The composite score is normalised to the suite's base model, fixed by the suite, never to the other
rows: it needs the base model's results on the board, and is skipped (with the reason) without them.

Published numbers (``reported.yaml``, each with its source address and commit) are shown as ``reported`` rows:
they have no per-prompt outcomes, so no interval, rank or pairing; a reported rate that is not a multiple of 1/n
for the suite's prompt count n (within one unit of the last printed digit) was counted on other prompts, and the
board says so.

Results of different suites or suite versions never share a ranking: a board of mixed results is refused, in one
line, before anything is written. The page needs no server and no network: CSS, script and data are inline.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from dataigm.files import atomic_write_text
from dataigm.markdown import escape, table
from dataigm.safe_yaml import load_yaml
from dataigm.suite import Suite, load_suite
from detectors.stats import N_BOOT

from .paired import composite_score, mcnemar_exact, paired_difference, paired_mean_difference, rank_intervals
from .results import prompt_key, read_results

REPORTED_FILE = Path(__file__).with_name("reported.yaml")
TEMPLATE = Path(__file__).with_name("board.html")
PLACEHOLDER = "__BOARD_DATA__"


# ---------------------------------------------------------------- inputs


def load_board_results(paths: Sequence[str | Path], suite_ref: str | None = None) -> tuple[Suite, list[dict]]:
    """Read and verify every results file, and the one suite version they all belong to.

    Args:
        paths: results files (``dataigm bench run``'s, or :func:`detectors.bench.results.write_results`').
        suite_ref: the suite file when the results are of a suite that is not packaged; default: the packaged
            ``NAME@VERSION`` the results name.

    Raises:
        ValueError: in one line: a results file refused by :func:`read_results`, results of more than one suite
            or suite version, a suite version this dataigm does not have, a suite file whose sha256 is not the
            one the results were measured with, or two results of one model label.
    """
    if not paths:
        raise ValueError("give at least one results file")
    results = [read_results(p) for p in paths]
    ids = sorted({(r["suite"]["id"], r["suite"]["sha256"]) for r in results})
    if len(ids) > 1:
        named = ", ".join(f"{i} (sha256 {s[:12]})" for i, s in ids)
        raise ValueError(
            f"results of different suites or suite versions never share a ranking: {named}; make one board per suite version"
        )
    suite_id, sha256 = ids[0]
    suite = load_suite(suite_ref or suite_id)
    if suite.id != suite_id or suite.sha256 != sha256:
        raise ValueError(
            f"the results were measured on {suite_id} (suite file sha256 {sha256[:12]}), but {suite_ref or suite_id} "
            f"is {suite.id} (sha256 {suite.sha256[:12]}): another definition, not comparable"
        )
    labels = [r["model"]["label"] for r in results]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise ValueError(f"two results files of the model label(s) {twice}: one row per model on a board")
    return suite, results


def _prompt_count(suite: Suite, concept: str | None) -> int:
    """The suite's prompts of a concept (all concepts for None): rows of its non-reference prompt sets."""
    return sum(
        p.rows
        for p in suite.prompt_sets
        if p.kind != "reference" and (concept is None or p.concept in (None, concept))
    )


def multiple_of(value: float, n: int, tolerance: float) -> bool:
    """Whether ``value`` is ``k / n`` for a whole ``k``, within ``tolerance`` (the printed precision)."""
    return n > 0 and abs(round(value * n) / n - value) <= tolerance + 1e-12


def reported_rows(suite: Suite, data: Mapping | None = None) -> tuple[list[dict], list[str]]:
    """The suite's published rows (``reported.yaml``) and the warnings about their prompt counts.

    Returns:
        ``(rows, warnings)``: each row has ``model``, ``kind`` ``reported``, ``source`` and ``numbers``
        (``{key: {"value", "metric", "concept", "printed"}}``, rates as fractions).
    """
    if data is None:
        data = load_yaml(REPORTED_FILE.read_text(encoding="utf-8"), str(REPORTED_FILE)) or {}
    entry = data.get(suite.id)
    if not entry:
        return [], []
    concepts = [c["id"] for c in suite.data["concepts"]]
    single = concepts[0] if len(concepts) == 1 else None
    percent, decimals = set(entry.get("percent", [])), int(entry.get("decimals", 2))
    # one unit of the last printed digit: a source may round or truncate (ESD's 76.05% is 108/142 = 76.056%)
    tolerance = 10**-decimals / 100
    n = _prompt_count(suite, single)
    rows, warnings = [], []
    for item in entry["rows"]:
        numbers, off = {}, []
        for metric, printed in item.items():
            if metric in ("model", "code"):
                continue
            rate = metric in percent
            value = printed / 100 if rate else printed
            text = f"{printed:.{decimals}f}%" if rate else f"{printed}"  # as the source printed it
            number = {"value": value, "metric": metric, "concept": None, "printed": text, "rate": rate}
            numbers[metric] = number
            if single:
                numbers[f"{metric}/{single}"] = number | {"concept": single}
            if rate and not multiple_of(value, n, tolerance):
                off.append(metric)
        row = {"model": item["model"], "kind": "reported", "code": item.get("code"), "source": entry["source"]}
        if off:
            fits = [m for m in range(10, 1001) if all(multiple_of(numbers[k]["value"], m, tolerance) for k in off)]
            counts = ", ".join(str(m) for m in fits[:3]) or "none up to 1000"
            note = (
                f"reported {', '.join(off)} of {item['model']} not a multiple of 1/{n} (the suite's {n} prompts, "
                f"within one unit of the last printed digit): counted on another number of prompts (consistent with n = {counts})"
            )
            row["prompt_count_warning"] = note
            warnings.append(note)
        row["numbers"] = numbers
        rows.append(row)
    return rows, warnings


# ---------------------------------------------------------------- the board's numbers


def _columns(suite: Suite, rows: Sequence[Mapping]) -> list[dict]:
    """The board's columns: the composite's metrics first, then the others; per metric, all prompts then each
    concept in the suite's order."""
    order = [t["metric"] for t in suite.data["composite"]["terms"]]
    concepts = [c["id"] for c in suite.data["concepts"]]
    paths = {c["id"]: c["category"] for c in suite.data["concepts"]}
    seen: dict[str, dict] = {}
    for row in rows:
        for key, number in row["numbers"].items():
            if key not in seen:
                seen[key] = {
                    "key": key,
                    "metric": number["metric"],
                    "concept": number["concept"],
                    "path": paths.get(number["concept"]),
                    "rate": bool(number.get("rate", number.get("kind") == "measured")),
                    "better": number.get("better"),
                    "measured": False,
                }
            seen[key]["measured"] |= row["kind"] == "measured"
            seen[key]["better"] = seen[key]["better"] or number.get("better")
    metrics = order + sorted({c["metric"] for c in seen.values()} - set(order))

    def place(column):
        concept = column["concept"]
        return (metrics.index(column["metric"]), -1 if concept is None else concepts.index(concept))

    columns = sorted(seen.values(), key=place)
    if len(concepts) == 1:  # all prompts are the one concept's: one column, the concept's (with its path)
        columns = [c for c in columns if c["concept"] is not None or f"{c['metric']}/{concepts[0]}" not in seen]
    for column in columns:  # reported-only numbers: the suite's composite says which way is better
        column["better"] = column["better"] or "lower"
    return columns


def outcome_matrix(results: Sequence[Mapping], metric: str, concept: str | None) -> tuple[np.ndarray, list[str]]:
    """``(models, prompts)`` outcomes of ``metric`` (of ``concept``, or all concepts), NaN where a model has none;
    prompts identified by :func:`detectors.bench.results.prompt_key`."""
    per_model = []
    for r in results:
        per_model.append(
            {
                prompt_key(o): o["outcomes"].get(metric)
                for o in r["outcomes"]
                if concept in (None, o["concept"]) and o["outcomes"].get(metric) is not None
            }
        )
    keys = sorted(set().union(*per_model))
    x = np.array([[m.get(k, np.nan) for k in keys] for m in per_model], dtype=np.float64).reshape(len(results), -1)
    return x, keys


def _is_base(result: Mapping, base: Mapping) -> bool:
    spec = result["model"]["spec"]
    return result["model"]["label"] == base["label"] or spec in (base["spec"], {"base": base["spec"]})


def board_data(
    suite: Suite,
    results: Sequence[Mapping],
    reported: bool = True,
    n_boot: int = N_BOOT,
    seed: int = 0,
    reported_data: Mapping | None = None,
) -> dict:
    """Everything a board shows, as plain data (the page's embedded JSON, the markdown's source)."""
    rows = []
    for r in results:
        rows.append(
            {
                "model": r["model"]["label"],
                "kind": "measured",
                "hub": r["model"].get("hub"),
                "checksum": r["checksum"],
                "date": r["date"],
                "device": r["device"],
                "nonstandard": r["nonstandard"],
                "images_supplied": r["images_supplied"],
                "numbers": r["numbers"],
            }
        )
    warnings = []
    if reported:
        extra, warnings = reported_rows(suite, reported_data)
        rows += extra
    columns = _columns(suite, rows)
    measured = [r for r in rows if r["kind"] == "measured"]
    labels = [r["model"] for r in measured]
    pairs, notes = [], []
    for column in columns:
        if not (column["rate"] and column["measured"] and results):
            continue
        x, _ = outcome_matrix(results, column["metric"], column["concept"])
        try:
            ranks = rank_intervals(x, labels, column["better"] == "lower", n_boot=n_boot, seed=seed)
        except ValueError as err:
            notes.append(f"{column['key']}: no paired ranks ({err})")
            continue
        for row, rank in zip(measured, ranks, strict=True):
            row.setdefault("ranks", {})[column["key"]] = {"rank": rank.rank, "ci": list(rank.ci)}
        for i, j in itertools.combinations(range(len(measured)), 2):
            difference = paired_difference(x[i], x[j], n_boot=n_boot, seed=seed)
            test = mcnemar_exact(x[i], x[j])
            pairs.append(
                {"key": column["key"], "a": labels[i], "b": labels[j], "difference": difference, "mcnemar": test}
            )
    mean_pairs = []  # means of per-prompt values (CLIP score): paired differences; set metrics (FID): none
    for column in columns:
        values = [r["numbers"].get(column["key"], {}).get("per_prompt") for r in results]
        if column["rate"] or len(results) < 2 or not all(isinstance(v, dict) and v for v in values):
            continue
        for i, j in itertools.combinations(range(len(measured)), 2):
            difference = paired_mean_difference(values[i], values[j], n_boot=n_boot, seed=seed)
            mean_pairs.append({"key": column["key"], "a": labels[i], "b": labels[j], "difference": difference})
    base = suite.data["base_model"]
    terms = suite.data["composite"]["terms"]
    base_rows = [r for r in results if _is_base(r, base)]
    for row in rows:
        if row["kind"] == "reported":
            row["composite"] = {"value": None, "skipped": "reported numbers: not measured beside the base model"}
        elif not base_rows:
            row["composite"] = {
                "value": None,
                "skipped": f"no results of the suite's base model {base['label']} ({base['spec']}) on this board",
            }
        else:

            def values(numbers):
                return {k: v.get("value") for k, v in numbers.items()}

            row["composite"] = composite_score(values(row["numbers"]), values(base_rows[0]["numbers"]), terms)
    return {
        "suite": suite.identity(),
        "description": suite.data["description"].strip(),
        "base_model": base,
        "composite": {"base": suite.data["composite"]["base"], "rule": suite.data["composite"]["rule"].strip()},
        "concepts": [{"id": c["id"], "path": c["category"]} for c in suite.data["concepts"]],
        "columns": columns,
        "rows": rows,
        "pairs": pairs,
        "mean_pairs": mean_pairs,
        "bootstrap": {"n_boot": n_boot, "seed": seed, "unit": "prompts (one resample for every model)"},
        "warnings": warnings + notes,
    }


# ---------------------------------------------------------------- rendering


def fmt(value: float | None, rate: bool) -> str:
    """A rate as a percentage with one decimal, any other number with 4 significant digits; ``-`` for none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{100 * value:.1f}%" if rate else f"{value:.4g}"


def _cell(row: Mapping, column: Mapping) -> str:
    number = row["numbers"].get(column["key"])
    if number is None:
        return "-"
    if number.get("value") is None:
        return f"skipped: {escape(number.get('skipped', 'no value'))}"
    text = number.get("printed") or fmt(number["value"], column["rate"])
    ci = number.get("ci")
    if ci and None not in ci:
        text += f" [{fmt(ci[0], column['rate'])}, {fmt(ci[1], column['rate'])}]"
    rank = row.get("ranks", {}).get(column["key"])
    if rank:
        text += f" #{rank['rank']} ({rank['ci'][0]}-{rank['ci'][1]})"
    return text


def _flags(row: Mapping) -> str:
    if row["kind"] == "reported":
        source = row["source"]
        flag = f"reported: {source['address']} @ {source['commit'][:12]}, {source.get('path', '')}"
        return flag + (" (prompt count differs)" if row.get("prompt_count_warning") else "")
    flags = []
    if row["nonstandard"]["value"]:
        flags.append("nonstandard: " + "; ".join(row["nonstandard"]["changes"]))
    if row["images_supplied"]:
        flags.append("images supplied")
    return escape(", ".join(flags)) or "-"


def board_markdown(data: Mapping) -> str:
    """``board.md``: the suite, the composite's base, warnings, the table, and the paired comparisons."""
    suite = data["suite"]
    measured = sum(r["kind"] == "measured" for r in data["rows"])
    boot = data["bootstrap"]
    lines = [
        f"# Board: {suite['id']}",
        "",
        f"Suite `{suite['id']}` (suite file sha256 `{suite['sha256']}`): {measured} measured model(s), "
        f"{len(data['rows']) - measured} reported row(s).",
        "",
        "Rates are shares of prompts with their Wilson 95% interval over prompts. Every measured model saw the same "
        f"prompts and seeds, so ranks and differences are paired: `#rank (low-high)` is the rank (1 = best) with the "
        f"95% percentile interval of ranks over {boot['n_boot']} paired bootstrap resamples of the prompts "
        f"(seed {boot['seed']}).",
        "",
        f"Composite: normalised to the suite's base model **{data['base_model']['label']}** "
        f"(`{data['base_model']['spec']}`), fixed by the suite, never to the other rows. {data['composite']['rule']}",
        "",
        "Reported rows are published numbers shown as their source printed them: no interval, no rank, no pairing.",
    ]
    if data["warnings"]:
        lines += ["", "## Warnings", ""] + [f"* {escape(w)}" for w in data["warnings"]]
    header = ["model", "flags", "composite", *[c["key"] for c in data["columns"]]]
    body = []
    for row in data["rows"]:
        composite = row["composite"]
        score = (
            f"{composite['value']:.3f}"
            if composite["value"] is not None
            else f"skipped: {escape(composite['skipped'])}"
        )
        name = escape(row["model"]) + (" (reported)" if row["kind"] == "reported" else "")
        body.append([name, _flags(row), score, *[_cell(row, c) for c in data["columns"]]])
    lines += ["", "## Results", "", table(header, body)]
    if data["pairs"]:
        lines += ["", "## Paired comparisons", ""]
        lines.append(
            "difference = rate(a) - rate(b) on the prompts both have, paired bootstrap 95% interval; McNemar: exact "
            "two-sided binomial test on the discordant prompts (a only / b only)."
        )
        rate = {c["key"]: c["rate"] for c in data["columns"]}
        for key, group in itertools.groupby(data["pairs"], key=lambda p: p["key"]):
            rows = []
            for p in group:
                d, m = p["difference"], p["mcnemar"]
                low, high = d["ci"]
                rows.append(
                    [
                        escape(p["a"]),
                        escape(p["b"]),
                        f"{100 * d['value']:+.1f} pts [{100 * low:+.1f}, {100 * high:+.1f}]" if rate[key] else "-",
                        f"{m['p_value']:.3g}",
                        f"{m['n10']} / {m['n01']}",
                        d["n"],
                    ]
                )
            lines += ["", f"### {key}", "", table(["a", "b", "difference", "McNemar p", "a only / b only", "n"], rows)]
    if data.get("mean_pairs"):
        lines += ["", "## Paired comparisons of means", ""]
        lines.append("difference = mean(a) - mean(b) of the per-prompt values on the prompts both have, paired "
                     "bootstrap 95% interval. A set metric (FID) has no per-prompt values: its own interval only.")  # fmt: skip
        for key, group in itertools.groupby(data["mean_pairs"], key=lambda p: p["key"]):
            rows = [
                [escape(p["a"]), escape(p["b"]), f"{p['difference']['value']:+.4g} "
                 f"[{p['difference']['ci'][0]:+.4g}, {p['difference']['ci'][1]:+.4g}]", p["difference"]["n"]]
                for p in group
            ]  # fmt: skip
            lines += ["", f"### {key}", "", table(["a", "b", "difference", "n"], rows)]
    return "\n".join(lines) + "\n"


def board_html(data: Mapping) -> str:
    """``board.html``: the template with the board's data embedded as JSON (``<``, ``>``, ``&`` escaped, so no text
    of a results file can close the script element)."""
    payload = json.dumps(data, ensure_ascii=False, allow_nan=False)
    payload = payload.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return TEMPLATE.read_text(encoding="utf-8").replace(PLACEHOLDER, payload)


def write_board(
    paths: Sequence[str | Path],
    out: str | Path,
    suite_ref: str | None = None,
    reported: bool = True,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Read and check every results file, then write ``OUT/board.md`` and ``OUT/board.html``.

    Nothing is written when a file is refused (:func:`load_board_results`).
    """
    suite, results = load_board_results(paths, suite_ref)
    data = board_data(suite, results, reported=reported, n_boot=n_boot, seed=seed)
    markdown, html = board_markdown(data), board_html(data)
    out = Path(out)
    atomic_write_text(out / "board.md", markdown)
    atomic_write_text(out / "board.html", html)
    return out / "board.md", out / "board.html"
