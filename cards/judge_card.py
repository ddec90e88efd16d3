"""The model card of a dataigm judge, built from its files (no import of ``detectors``).

Inputs: the judge folder's ``config.json`` (concepts, class names, temperatures, thresholds and rule, the
training dataset and its revision, validation metrics) and, when given, the folder written by
``dataigm judge eval`` (``metrics.json`` with every group's metrics and intervals, ``roc_<concept>.png``,
``reliability_<concept>.png``), and a ``dataigm judge agree`` folder (its agreement section and kappa matrices,
rendered by :mod:`cards.agreement_card`). The YAML comes from huggingface_hub's ``ModelCardData`` (with a
``model-index`` of the test metrics); the limitations are computed from the numbers.

A baseline judge given by spec (``igmu:``, ``q16:``, ``vlm:``...) has no folder of its own: its card is built
from its ``dataigm judge eval`` folder (:func:`baseline_judge_card`), with the judge's description from
``metrics.json``, including the sentences it gives on how its output reads (``reading``: which class a released
head's sigmoid is, a threshold taken from the reference, when a judgement is left out).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from .agreement_card import agreement_plots, agreement_section, read_agreement
from .dataset_card import PAPER_CITATION
from .limitations import ALL, GAP_POINTS, limitations, rows_by_concept
from .markdown import image, number, table, with_ci

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

logger = logging.getLogger(__name__)

JUDGE_FORMAT = "dataigm-judge/1"  # the judge_format key of config.json (detectors.judges.timm_judge.JUDGE_FORMAT)
JUDGE_TAGS = ["image-classification", "timm", "dataigm", "machine-unlearning"]
METRICS = (
    ("accuracy", "accuracy"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("f1", "F1"),
    ("auroc", "AUROC"),
    ("ece", "ECE"),
)
# model-index metric ids (Hugging Face ``evaluate`` names) for the overall test metrics
INDEX_METRICS = {"accuracy": "accuracy", "f1": "f1", "auroc": "roc_auc", "precision": "precision", "recall": "recall"}
PLOT_KINDS = {"roc": "ROC curves", "reliability": "reliability diagram"}  # file prefix -> alt text


def read_judge_config(judge_dir: str | Path) -> dict:
    """The ``config.json`` of a judge folder saved by ``dataigm judge train``.

    Raises:
        ValueError: the folder has no ``config.json`` or it is not a dataigm judge's.
    """
    path = Path(judge_dir) / "config.json"
    if not path.is_file():
        raise ValueError(f"{judge_dir} is not a judge folder: {path.name} is missing")
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("judge_format") != JUDGE_FORMAT:
        raise ValueError(
            f"{judge_dir} does not hold a dataigm judge: config.json judge_format is "
            f"{config.get('judge_format')!r}, expected {JUDGE_FORMAT!r}"
        )
    return config


def read_judge_metrics(eval_dir: str | Path, config: dict | None = None) -> dict:
    """The ``metrics.json`` written by ``dataigm judge eval``; checked against the judge's ``config`` when given.

    Raises:
        ValueError: ``metrics.json`` is missing, or it measured a judge with other concepts or thresholds.
    """
    path = Path(eval_dir) / "metrics.json"
    if not path.is_file():
        raise ValueError(f"{eval_dir} is not a `dataigm judge eval` folder: {path.name} is missing")
    metrics = json.loads(path.read_text(encoding="utf-8"))
    if config is not None:
        judge = metrics.get("judge", {})
        if judge.get("thresholds") != config["thresholds"]:
            raise ValueError(
                f"{path} measured another judge: its thresholds {judge.get('thresholds')} are not this judge's "
                f"{config['thresholds']}"
            )
    return metrics


def describe_threshold_rule(rule: str) -> str:
    """A sentence for a threshold rule: ``max_f1``, ``fpr@X`` or ``fixed@T``."""
    kind, _, value = rule.partition("@")
    if kind == "max_f1":
        return "the validation score that maximises F1"
    if kind == "fpr" and value:
        return f"the lowest threshold whose validation false-positive rate is at most {value}"
    if kind == "fixed" and value:
        return f"fixed at {value}"
    return f"`{rule}`"


def _by_concept(counts: dict | None) -> str:
    nonzero = {c: n for c, n in (counts or {}).items() if n}
    return " (" + ", ".join(f"{c}: {n}" for c, n in nonzero.items()) + ")" if nonzero else ""


def judge_reading(judge: dict) -> str:
    """The "How it reads an image" text of a judge description (``Judge.describe()`` as stored in metrics.json):
    its spec, concepts and thresholds, then each sentence of its ``reading``."""
    thresholds = ", ".join(f"`{c}` >= {t:.4g}" for c, t in (judge.get("thresholds") or {}).items())
    lines = [f"Spec: `{judge.get('spec')}` (kind `{judge.get('kind')}`); present when {thresholds or 'unknown'}."]
    lines += list(judge.get("reading") or [])
    return "\n".join(f"- {line}" for line in lines)


def _metric_tables(metrics: dict, decisions: str = "the calibrated probability and the threshold below") -> str:
    data, boot = metrics.get("data", {}), metrics.get("bootstrap", {})
    intro = (
        f"Measured with `dataigm judge eval` on split `{data.get('split')}` of `{data.get('name')}` "
        f"(manifest sha256 `{data.get('manifest_sha256')}`): {metrics.get('images')} images, "
        f"{metrics.get('unreadable_images', 0)} unreadable, {metrics.get('excluded_nan', 0)} left out because the "
        f"judge returned NaN for them{_by_concept(metrics.get('excluded_nan_by_concept'))}. "
        f"Each value has a {boot.get('ci', 0.95):.0%} percentile "
        f"bootstrap interval ({boot.get('resamples')} resamples); ECE uses {boot.get('ece_bins', 15)} equal-width bins. "
        f"Decisions use {decisions}."
    )
    parts = [intro]
    header = ("source", "method", "n", "targets", *(label for _, label in METRICS))
    for concept, rows in rows_by_concept(metrics).items():
        body = []
        for row in rows:
            m = row["metrics"]
            cells = [with_ci(m[k]["value"], m[k]["low"], m[k]["high"]) if k in m else "-" for k, _ in METRICS]
            body.append((row["source"], row["method"], row["n"], row.get("n_target", "-"), *cells))
        parts.append(f"### {concept}\n\n" + table(header, body))
    return "\n\n".join(parts)


def _validation_table(config: dict) -> str:
    validation = config.get("metrics", {}).get("validation", {})
    rows = [
        (
            concept,
            v.get("n", "-"),
            *(number(v.get(k)) for k in ("accuracy", "precision", "recall", "f1", "auroc", "ece", "ece_uncalibrated")),
        )
        for concept, v in validation.items()
    ]
    if not rows:
        return "No metrics are stored with this judge: measure it with `dataigm judge eval` and rebuild the card with `--eval`."
    header = ("concept", "n", "accuracy", "precision", "recall", "F1", "AUROC", "ECE", "ECE before calibration")
    return (
        "Validation metrics stored with the judge (images carved from the training split, no intervals). "
        "Per source and unlearning method, with intervals: `dataigm judge eval`, then rebuild this card with "
        "`--eval`.\n\n" + table(header, rows)
    )


def _training_data(config: dict, dataset_repo: str | None) -> str:
    dataset = config.get("dataset") or {}
    training = config.get("training") or {}
    if not dataset and not dataset_repo:
        return "The judge's `config.json` does not record its training data."
    name = (
        f"[`{dataset_repo}`](https://huggingface.co/datasets/{dataset_repo})"
        if dataset_repo
        else f"`{dataset.get('name')}`"
    )
    lines = [
        f"Trained on {name}, split `{dataset.get('train_split', 'train')}`; dataset revision: manifest sha256 "
        f"`{dataset.get('manifest_sha256', 'unknown')}` (schema {dataset.get('schema_version', '?')}). "
        f"Validation: {dataset.get('validation', 'not recorded')}."
    ]
    if dataset.get("exclude_methods"):
        lines.append(
            "Images of the unlearning method(s) "
            + ", ".join(f"`{m}`" for m in dataset["exclude_methods"])
            + " were left out of training and validation, so the judge can be measured on methods it never saw "
            "(see Held-out methods)."
        )
    counts = dataset.get("counts", {})
    rows = [
        (split, concept, by_label.get("target", 0), by_label.get("pair", 0))
        for split, by_concept in counts.items()
        for concept, by_label in by_concept.items()
    ]
    if rows:
        lines.append(table(("split", "concept", "target images", "pair images"), rows))
    if training:
        lines.append(table(("setting", "value"), [(k, f"`{v}`") for k, v in training.items()]))
    return "\n\n".join(lines)


def _holdout(metrics: dict) -> str:
    """The held-out methods section: per concept, the held-out and seen methods' metrics and their gap."""
    holdout = metrics["holdout"]
    methods = ", ".join(f"`{m}`" for m in holdout["methods"])
    text = (
        f"Held-out methods ({holdout['chosen_by']}): {methods}. Their images are measured apart from those of "
        "the methods the judge saw in training; images without a method (real and web images) are in neither "
        "group. The gap is seen minus held-out (a positive accuracy gap: the judge is worse on methods it never "
        "saw), with a percentile bootstrap interval that resamples each group on its own."
    )
    if holdout.get("seen_in_training"):
        text += (
            " Note: the judge's training did include "
            + ", ".join(f"`{m}`" for m in holdout["seen_in_training"])
            + ", so those images are not truly held out."
        )
    header = ("concept", "methods", "n", *(label for _, label in METRICS))
    body = []
    for row in holdout["rows"]:
        for group, label in (("held_out", "held out: " + ", ".join(holdout["methods"])), ("seen", None)):
            m = row[group]["metrics"]
            cells = [with_ci(m[k]["value"], m[k]["low"], m[k]["high"]) for k, _ in METRICS]
            label = label or "seen: " + ", ".join(row.get("seen_methods", []))
            body.append((row["concept"], label, row[group]["n"], *cells))
        gap = [with_ci(row["gap"][k]["value"], row["gap"][k]["low"], row["gap"][k]["high"]) for k, _ in METRICS]
        body.append((row["concept"], "gap (seen - held out)", "", *gap))
    return text + "\n\n" + table(header, body)


def _calibration(config: dict) -> str:
    validation = config.get("metrics", {}).get("validation", {})
    rule = config.get("threshold_rule", "unknown")
    rows = [
        (
            concept,
            f"{config['temperatures'][concept]:.4g}",
            f"{config['thresholds'][concept]:.4g}",
            number(validation.get(concept, {}).get("ece_uncalibrated")),
            number(validation.get(concept, {}).get("ece")),
        )
        for concept in config["concepts"]
    ]
    text = (
        "Each concept has one logit. Its probability is `sigmoid(logit / T)` with a temperature `T` fitted on the "
        "validation images by minimising the negative log-likelihood, and the concept is called present when the "
        f"probability is at least the threshold. Threshold rule `{rule}`: {describe_threshold_rule(rule)}"
    )
    if rule.partition("@")[0] in ("max_f1", "fpr"):
        text += ", placed halfway between the chosen validation score and the next lower one"
    return text + ".\n\n" + table(("concept", "temperature", "threshold", "validation ECE before", "after"), rows)


def _plots(eval_dir: Path | None, concepts: list[str]) -> list[tuple[str, Path]]:
    """``(concept, plot file)`` for each ROC / reliability plot the eval folder has."""
    if eval_dir is None:
        return []
    return [
        (concept, eval_dir / f"{kind}_{concept}.png")
        for concept in concepts
        for kind in PLOT_KINDS
        if (eval_dir / f"{kind}_{concept}.png").is_file()
    ]


def _usage(repo: str, concepts: list[str]) -> str:
    first = concepts[0]
    return (
        "```python\n"
        "from detectors import load_judge  # pip install dataigm\n\n"
        f'judge = load_judge("hf-hub:{repo}")\n'
        "pred = judge.predict(images)  # PIL images, image tensors, files, a datasets.Dataset or a DataIGM root\n"
        f'pred.probability("{first}"), pred.is_present("{first}")\n'
        "```\n\n"
        "The bare network (raw logits, one per concept, in the order "
        f"{', '.join(f'`{c}`' for c in concepts)}; apply the temperatures and thresholds above yourself):\n\n"
        "```python\nimport timm\n\n"
        f'model = timm.create_model("hf-hub:{repo}", pretrained=True).eval()\n'
        "cfg = timm.data.resolve_model_data_config(model)\n"
        "transform = timm.data.create_transform(**cfg, is_training=False)\n"
        "```"
    )


def _eval_results(config: dict, metrics: dict, dataset_repo: str | None) -> list:
    from huggingface_hub import EvalResult

    data = metrics.get("data", {})
    results = []
    for row in metrics["rows"]:
        if row["source"] != ALL or row["method"] != ALL:
            continue
        for key, metric_type in INDEX_METRICS.items():
            value = row["metrics"].get(key, {}).get("value")
            if value is None:
                continue
            results.append(
                EvalResult(
                    task_type="image-classification",
                    dataset_type=dataset_repo or data.get("name") or config.get("dataset", {}).get("name", "dataigm"),
                    dataset_name=f"{data.get('name', 'dataigm')} ({row['concept']})",
                    dataset_config=row["concept"],
                    dataset_split=data.get("split"),
                    metric_type=metric_type,
                    metric_name=f"{row['concept']} {key}",
                    metric_value=value,
                )
            )
    return results


def judge_card(
    judge_dir: str | Path,
    eval_dir: str | Path | None = None,
    repo_id: str | None = None,
    dataset_repo: str | None = None,
    license: str = "other",
    gap_points: float = GAP_POINTS,
    agreement_dir: str | Path | None = None,
) -> ModelCard:
    """The judge's ``huggingface_hub.ModelCard``; plots are linked by file name (see :func:`write_judge_card`).

    Args:
        judge_dir: a folder saved by ``dataigm judge train`` (``config.json``, ``model.safetensors``), or the
            ``dataigm judge eval`` folder of a baseline judge given by spec (then :func:`baseline_judge_card`).
        eval_dir: a ``dataigm judge eval`` folder for this judge (``metrics.json`` and plots); without it the
            card reports the validation metrics stored in ``config.json``.
        repo_id: the judge's Hub repository, used in the loading examples (``ORG/NAME`` otherwise).
        dataset_repo: the training dataset's Hub repository, linked and listed in the metadata.
        license: the judge's license (Hub license id).
        gap_points: groups more than this many accuracy points below the overall value are named.
        agreement_dir: a ``dataigm judge agree`` folder in which this judge is one of the judges: the card gets
            its agreement section (the agreement card's, with the kappa-matrix plots).
    """
    from huggingface_hub import ModelCard, ModelCardData

    judge_dir = Path(judge_dir)
    if _is_baseline_eval(judge_dir):
        return baseline_judge_card(judge_dir, license, gap_points)
    config = read_judge_config(judge_dir)
    eval_dir = None if eval_dir is None else Path(eval_dir)
    metrics = None if eval_dir is None else read_judge_metrics(eval_dir, config)
    concepts = list(config["concepts"])
    repo = repo_id or "ORG/NAME"
    name = repo.split("/")[-1] if repo_id else judge_dir.resolve().name
    data = ModelCardData(
        library_name="timm",
        pipeline_tag="image-classification",
        license=license,
        tags=list(JUDGE_TAGS),
        datasets=[dataset_repo] if dataset_repo else None,
        model_name=name if metrics else None,
        eval_results=_eval_results(config, metrics, dataset_repo) if metrics else None,
    )
    classes = config.get("class_names", {})
    concept_rows = [
        (
            f"`{c}`",
            f"`{classes[c][1]}`" if c in classes else "present",
            f"`{classes[c][0]}`" if c in classes else "absent",
        )
        for c in concepts
    ]
    architecture = config.get("architecture", "?")
    base = config.get("training", {}).get("model", architecture)
    parts = [
        f"# {name}",
        f"A dataigm judge: a timm `{architecture}` image classifier"
        + (f" (built from timm's `{base}`)" if base != architecture else "")
        + " with one "
        f"calibrated logit per concept, saying whether {', '.join(f'`{c}`' for c in concepts)} "
        f"{'is' if len(concepts) == 1 else 'are'} present in an image.\n\n"
        + table(("concept", "present (1)", "absent (0)"), concept_rows),
        "## Intended use\n\n"
        "An oracle for machine-unlearning research on text-to-image models: deciding whether a concept is still "
        "generated (forgetting rate and attack success rate in `dataigm evaluate`) and auditing image sets. "
        "It is not meant for decisions about people or for moderation without human review, and its numbers hold "
        "for images like those it was measured on (see Limitations).",
        "## Training data\n\n" + _training_data(config, dataset_repo),
        "## Evaluation\n\n" + (_metric_tables(metrics) if metrics else _validation_table(config)),
        *(["## Held-out methods\n\n" + _holdout(metrics)] if metrics and metrics.get("holdout") else []),
        "## Calibration and threshold\n\n" + _calibration(config),
    ]
    plots = _plots(eval_dir, concepts)
    if plots:
        by_concept: dict[str, list[str]] = {}
        for concept, path in plots:
            kind = path.stem.split("_", 1)[0]
            by_concept.setdefault(concept, []).append(image(path.name, f"{PLOT_KINDS[kind]} of {concept}"))
        parts.append(
            "## Plots\n\nROC curves (all images and one per source) and reliability diagrams of the test split.\n\n"
            + "\n\n".join(f"### {concept}\n\n" + " ".join(links) for concept, links in by_concept.items())
        )
    if agreement_dir is not None:
        parts.append(agreement_section(read_agreement(agreement_dir), agreement_dir, level=2))
    parts.append("## Limitations\n\n" + "\n".join(f"- {line}" for line in limitations(config, metrics, gap_points)))
    parts.append("## How to load\n\n" + _usage(repo, concepts))
    parts.append("## Citation\n\n```bibtex\n" + PAPER_CITATION + "\n```")
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(parts) + "\n")


def _is_baseline_eval(folder: Path) -> bool:
    """A ``dataigm judge eval`` folder of a judge given by spec (no ``config.json`` of a trained judge)."""
    return not (folder / "config.json").is_file() and (folder / "metrics.json").is_file()


def baseline_judge_card(eval_dir: str | Path, license: str = "other", gap_points: float = GAP_POINTS) -> ModelCard:
    """The card of a baseline judge (a spec such as ``igmu:…``), from its ``dataigm judge eval`` folder.

    It says how the judge reads an image (:func:`judge_reading`), then the measured metrics, plots and limitations
    as a trained judge's card does.
    """
    from huggingface_hub import ModelCard, ModelCardData

    eval_dir = Path(eval_dir)
    metrics = read_judge_metrics(eval_dir)
    judge = metrics.get("judge", {})
    concepts = list(judge.get("concepts") or [])
    data = ModelCardData(license=license, tags=["dataigm", "machine-unlearning"])
    parts = [
        f"# {judge.get('kind', 'baseline')} judge: {', '.join(concepts)}",
        f"A baseline judge given by spec, measured with `dataigm judge eval`; it says whether "
        f"{', '.join(f'`{c}`' for c in concepts)} {'is' if len(concepts) == 1 else 'are'} present in an image.",
        "## How it reads an image\n\n" + judge_reading(judge),
        "## Evaluation\n\n" + _metric_tables(metrics, "the judge's probability and its threshold above"),
    ]
    plots = _plots(eval_dir, sorted({row["concept"] for row in metrics.get("rows", [])}))
    if plots:
        parts.append(
            "## Plots\n\n" + " ".join(image(p.name, f"{PLOT_KINDS[p.stem.split('_', 1)[0]]}") for _, p in plots)
        )
    parts.append("## Limitations\n\n" + "\n".join(f"- {line}" for line in limitations({}, metrics, gap_points)))
    parts.append("## Citation\n\n```bibtex\n" + PAPER_CITATION + "\n```")
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(parts) + "\n")


def write_judge_card(
    judge_dir: str | Path,
    eval_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    repo_id: str | None = None,
    dataset_repo: str | None = None,
    license: str = "other",
    gap_points: float = GAP_POINTS,
    agreement_dir: str | Path | None = None,
) -> Path:
    """Write the judge card as ``README.md`` in ``out_dir`` (default: the judge folder), with the eval
    folder's ROC and reliability plots (and the agreement folder's kappa matrices) copied next to it; returns
    the README path.

    The other arguments are :func:`judge_card`'s.
    """
    card = judge_card(judge_dir, eval_dir, repo_id, dataset_repo, license, gap_points, agreement_dir)
    out = Path(out_dir or judge_dir)
    out.mkdir(parents=True, exist_ok=True)
    if _is_baseline_eval(Path(judge_dir)):  # a baseline judge: its eval folder holds the plots
        rows = json.loads((Path(judge_dir) / "metrics.json").read_text(encoding="utf-8")).get("rows", [])
        plots = [path for _, path in _plots(Path(judge_dir), sorted({row["concept"] for row in rows}))]
    else:
        concepts = list(read_judge_config(judge_dir)["concepts"])
        plots = [path for _, path in _plots(None if eval_dir is None else Path(eval_dir), concepts)]
    if agreement_dir is not None:
        plots += agreement_plots(read_agreement(agreement_dir), agreement_dir)
    for path in plots:
        if path.resolve() != (out / path.name).resolve():
            shutil.copyfile(path, out / path.name)
    readme = out / "README.md"
    card.save(readme)
    logger.info("wrote the judge card %s", readme)
    return readme
