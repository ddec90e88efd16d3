"""``dataigm bench push``: results files to a Hub dataset repository, and to each model's evaluation results.

* The dataset repository (``--repo``) gets each results file, byte for byte, under
  ``results/SUITE@VERSION/``, as a pull request by default.
* A model that is on the Hub (the results' ``model.hub``) gets a pull request adding
  ``.eval_results/dataigm-SUITE-vVERSION.yaml`` in the Hub's evaluation-results format (Hub documentation,
  "Evaluation Results", https://huggingface.co/docs/hub/eval-results): a YAML list of entries, each with
  ``dataset.id`` (the benchmark's dataset repository: ``--repo``), ``dataset.task_id``, ``value``, ``date``,
  ``source`` (``url``, ``name``) and ``notes``. Rates are written in percent, as the field's tables print them;
  the notes carry the interval, n and the results file's checksum. Nonstandard results are not sent there (they
  are not the benchmark's numbers), only to the dataset repository, flagged.

Every file is read and verified (:func:`detectors.bench.results.read_results`) before anything is sent. The token
comes from huggingface_hub's usual sources; it is never passed, read, printed or written here.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from tempfile import TemporaryDirectory

import yaml

from .results import read_results, results_file_name

logger = logging.getLogger(__name__)
SOURCE_NAME = "dataigm bench"


def _check_repo_id(repo_id: str, what: str = "Repository") -> str:
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"{what} {repo_id!r} must be ORG/NAME")
    return repo_id


def results_path_in_repo(results: Mapping) -> str:
    """Where a results file goes in the dataset repository: ``results/SUITE@VERSION/FILE``."""
    return f"results/{results['suite']['id']}/{results_file_name(results)}"


def task_id(results: Mapping, key: str) -> str:
    """The benchmark task of one number: ``SUITE-vVERSION-METRIC[-CONCEPT]`` (letters, digits, ``-``, ``_``)."""
    return f"{results['suite']['name']}-v{results['suite']['version']}-{key.replace('/', '-')}"


def eval_results_entries(results: Mapping, dataset_repo: str) -> list[dict]:
    """The Hub evaluation-results entries of one results file: one per number with a value."""
    source = f"https://huggingface.co/datasets/{dataset_repo}/blob/main/{results_path_in_repo(results)}"
    entries = []
    single = len(results["concepts"]) == 1  # the concept's numbers are the pooled ones: sent once
    for key, number in results["numbers"].items():
        if number.get("value") is None or (single and number["concept"] is not None):
            continue
        rate = number["kind"] == "measured"
        scale = 100 if rate else 1
        low, high = number.get("ci") or (None, None)
        interval = f"[{scale * low:.2f}, {scale * high:.2f}]" if None not in (low, high) else "none"
        unit = "%" if rate else ""
        notes = (
            f"{number['metric']} ({number['better']} is better){unit and ' in percent'}; 95% interval {interval} "
            f"({number['ci_rule']}), n = {number['n']}; suite {results['suite']['id']} sha256 "
            f"{results['suite']['sha256'][:12]}; results checksum {results['checksum'][:12]}"
        )
        if results["images_supplied"]:
            notes += "; images supplied"
        entries.append(
            {
                "dataset": {"id": dataset_repo, "task_id": task_id(results, key)},
                "value": round(scale * number["value"], 4),
                "date": results["date"][:10],
                "source": {"url": source, "name": SOURCE_NAME},
                "notes": notes,
            }
        )
    return entries


def eval_results_file(results: Mapping) -> str:
    """The model repository's file: ``.eval_results/dataigm-SUITE-vVERSION.yaml``."""
    return f".eval_results/dataigm-{results['suite']['name']}-v{results['suite']['version']}.yaml"


def push_results(
    paths: Sequence[str | Path],
    repo_id: str,
    create_pr: bool = True,
    model_results: bool = True,
    private: bool = False,
    commit_message: str = "Add dataigm benchmark results",
    api=None,
) -> list[tuple[str, str]]:
    """Push results files to ``repo_id`` (a dataset) and, for models on the Hub, their evaluation results.

    Args:
        paths: results files; every one is verified before anything is sent.
        repo_id: the dataset repository, ``ORG/NAME`` (created when missing).
        create_pr: open a pull request on the dataset repository (default) rather than commit to main.
        model_results: also open a pull request on each Hub model's repository with its evaluation results.
        private: create the dataset repository private.
        commit_message: the dataset commit's message.
        api: a ``huggingface_hub.HfApi`` (tests give the fake Hub's).

    Returns:
        ``[(where, url)]``: the dataset commit or pull request, then each model's pull request.

    Raises:
        ValueError: a bad repository id, a results file refused, two files of one name, or a model repository
            that does not exist on the Hub (before anything is sent).
    """
    _check_repo_id(repo_id)
    results = [(Path(p), read_results(p)) for p in paths]
    if not results:
        raise ValueError("give at least one results file")
    targets = [results_path_in_repo(r) for _, r in results]
    if len(set(targets)) != len(targets):
        raise ValueError(f"two results files would be written to the same path: {sorted(targets)}")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    models: dict[str, list[dict]] = {}
    for path, r in results:
        hub = r["model"].get("hub")
        if not (model_results and hub):
            continue
        if r["nonstandard"]["value"]:
            logger.warning("%s is nonstandard: not sent to %s's evaluation results", path, hub)
            continue
        _check_repo_id(hub, "Model repository")
        models.setdefault(hub, []).append(r)
    for hub in models:
        if not api.repo_exists(hub, repo_type="model"):
            raise ValueError(
                f"the model repository {hub} is not on the Hub (or not visible with your token); "
                "push with --no-model-results to send the results to the dataset only"
            )
    done = []
    with TemporaryDirectory(prefix="dataigm-bench-") as staging:
        for (path, _), target in zip(results, targets, strict=True):
            (Path(staging) / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(staging) / target)  # the verified bytes, so the checksum still holds
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=staging,
            repo_type="dataset",
            create_pr=create_pr,
            commit_message=commit_message,
        )
        done.append((f"dataset {repo_id}", str(getattr(info, "pr_url", None) or getattr(info, "commit_url", info))))
    for hub, group in models.items():
        with TemporaryDirectory(prefix="dataigm-eval-results-") as staging:
            files: dict[str, list[dict]] = {}
            for r in group:
                files.setdefault(eval_results_file(r), []).extend(eval_results_entries(r, repo_id))
            for name, entries in files.items():
                (Path(staging) / name).parent.mkdir(parents=True, exist_ok=True)
                (Path(staging) / name).write_text(yaml.safe_dump(entries, sort_keys=False), encoding="utf-8")
            info = api.upload_folder(
                repo_id=hub,
                folder_path=staging,
                repo_type="model",
                create_pr=True,
                commit_message=f"Add dataigm benchmark results ({', '.join(sorted({r['suite']['id'] for r in group}))})",
            )
        done.append((f"model {hub}", str(getattr(info, "pr_url", None) or getattr(info, "commit_url", info))))
    return done
