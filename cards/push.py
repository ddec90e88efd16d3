"""Publishing to the Hugging Face Hub: a dataset root, a judge with its card, an evaluation report with its card.

The token comes from huggingface_hub's usual sources (``HF_TOKEN``, ``hf auth login``): we never pass, read,
print, log or write it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING

from dataigm.revision import retired_shards
from dataigm.validate import validate_root

from .dataset_card import write_dataset_card
from .eval_card import report_files, write_eval_card
from .judge_card import read_judge_config, write_judge_card

if TYPE_CHECKING:
    from huggingface_hub import HfApi

logger = logging.getLogger(__name__)

REPO_TYPES = ("model", "dataset")
# config.json keys that timm's save_for_hf writes from the model itself; every other key is ours and is passed on
_TIMM_CONFIG_KEYS = ("architecture", "num_classes", "num_features", "global_pool", "model_args", "pretrained_cfg")


def _api(api: HfApi | None = None) -> HfApi:
    if api is not None:
        return api
    from huggingface_hub import HfApi

    return HfApi()


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is ``ORG/NAME``.

    Raises:
        ValueError: anything else.
    """
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"Repository {repo_id!r} must be ORG/NAME")
    return repo_id


def _create(api, repo_id: str, repo_type: str, private: bool, revision: str | None) -> None:
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    if revision is not None and not revision.startswith("refs/"):  # a branch, created when missing
        api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)


def push_dataset(
    root: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    api=None,
) -> str:
    """Validate ``root``, refresh its card and upload it as a dataset repository; returns the repo URL.

    The upload is resumable: ``upload_large_folder`` where huggingface_hub has it, else ``upload_folder``,
    which resumes an interrupted upload itself in huggingface_hub 1.x and later (with hf_xet). Running
    the same command again finishes an interrupted upload.
    """
    check_repo_id(repo_id)
    problems = validate_root(root)
    if problems:
        listed = "\n  ".join(problems[:10])
        raise ValueError(
            f"{root} does not validate ({len(problems)} problem(s)); fix them before pushing:\n  {listed}"
        )
    api = _api(api)
    write_dataset_card(root, repo_id=repo_id)
    url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    if revision is not None:
        api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
    ignore = [".dataigm.lock", "**/.*.tmp", ".cache/**"]
    large = getattr(api, "upload_large_folder", None)
    if large is not None:  # several commits, resumable through a cache inside the folder
        large(
            repo_id=repo_id,
            folder_path=str(root),
            repo_type="dataset",
            revision=revision,
            private=private,
            ignore_patterns=ignore,
        )
    else:
        api.upload_folder(
            repo_id=repo_id,
            folder_path=str(root),
            repo_type="dataset",
            revision=revision,
            commit_message=commit_message or "Upload DataIGM dataset with dataigm",
            ignore_patterns=ignore,
        )
    _delete_retired(api, repo_id, root, revision)
    logger.info("pushed %s to %s", root, repo_id)
    return str(url)


def _delete_retired(api, repo_id: str, root: str | Path, revision: str | None) -> None:
    """Delete from the Hub the shard tars that a revision of ``root`` retired (dedup, curate).

    An upload adds and replaces files but never removes one, and the card's configs read ``data/*/<split>/*.tar``:
    without this, a root pushed, revised and pushed again would serve the old shards beside their replacements.
    """
    retired = retired_shards(root)
    if not retired:
        return
    from huggingface_hub import CommitOperationDelete

    remote = set(api.list_repo_files(repo_id, repo_type="dataset", revision=revision))
    stale = sorted(shard for shard in retired if shard in remote and not (Path(root) / shard).exists())
    if stale:
        api.create_commit(
            repo_id=repo_id,
            repo_type="dataset",
            revision=revision,
            operations=[CommitOperationDelete(path_in_repo=shard) for shard in stale],
            commit_message=f"Delete {len(stale)} shard(s) retired by a dataset revision",
        )
        logger.info("deleted %d retired shard(s) from %s", len(stale), repo_id)


@dataclass(frozen=True)
class JudgePush:
    """What :func:`push_judge` did: the repository, the model commit, and whether our card was ``written``
    or the README already on the Hub was ``kept``."""

    repo_id: str
    commit_url: str
    card: str


def _judge_model(judge_dir: Path, config: dict):
    """The saved judge as a timm model whose ``pretrained_cfg`` is exactly the saved one, so that timm
    writes the same ``config.json`` again (loading adds fields such as ``label_names`` to it)."""
    import timm

    model = timm.create_model(f"local-dir:{judge_dir}", pretrained=True)
    model.pretrained_cfg = {**config["pretrained_cfg"], "architecture": config["architecture"]}
    return model


def push_judge(
    judge_dir: str | Path,
    repo_id: str,
    eval_dir: str | Path | None = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str = "Add dataigm judge",
    create_pr: bool = False,
    overwrite_card: bool = False,
    dataset_repo: str | None = None,
    license: str = "other",
    api: HfApi | None = None,
    agreement_dir: str | Path | None = None,
) -> JudgePush:
    """Publish the judge saved in ``judge_dir`` with its card; the weights go through timm's ``push_to_hf_hub``.

    The README rule, explicitly: a README already on the Hub (at ``revision``) is kept unless
    ``overwrite_card``; otherwise our card (``README.md`` plus the ROC and reliability plots of ``eval_dir``) is
    committed first. timm's ``push_to_hf_hub`` then uploads ``config.json`` (the same keys as the local one) and
    ``model.safetensors``; it writes its own default README only into a repository without one, which by then
    never happens. With ``create_pr`` both commits go to one pull request.

    Args:
        judge_dir: a folder saved by ``dataigm judge train`` (``config.json``, ``model.safetensors``).
        repo_id: the model repository, ``ORG/NAME`` (created when missing).
        eval_dir: a ``dataigm judge eval`` folder of this judge, for the card's metrics and plots.
        agreement_dir: a ``dataigm judge agree`` folder, for the card's agreement section and kappa matrices.
        revision: the branch to push to (created when missing).
        api: a ``huggingface_hub.HfApi`` for the card commit (tests give a fake; timm makes its own).

    Raises:
        ValueError: a bad ``repo_id``, ``judge_dir`` or ``eval_dir`` (before anything is sent).
    """
    from timm.models import push_to_hf_hub

    check_repo_id(repo_id)
    judge_dir = Path(judge_dir)
    config = read_judge_config(judge_dir)
    model = _judge_model(judge_dir, config)
    with TemporaryDirectory(prefix="dataigm-card-") as staging:
        write_judge_card(
            judge_dir,
            eval_dir,
            staging,
            repo_id=repo_id,
            dataset_repo=dataset_repo,
            license=license,
            agreement_dir=agreement_dir,
        )
        api = _api(api)
        _create(api, repo_id, "model", private, revision)
        has_readme = api.file_exists(repo_id, "README.md", repo_type="model", revision=revision)
        card = "written" if overwrite_card or not has_readme else "kept"
        target, pr = revision, create_pr
        if card == "written":
            info = api.upload_folder(
                repo_id=repo_id,
                folder_path=staging,
                repo_type="model",
                revision=revision,
                create_pr=create_pr,
                commit_message=f"{commit_message}: model card",
            )
            if create_pr:  # the weights join the card's pull request
                target, pr = info.pr_revision, False
        else:
            logger.info("%s already has a README.md: kept (overwrite_card=True replaces it)", repo_id)
    commit = push_to_hf_hub(
        model,
        repo_id,
        commit_message=commit_message,
        revision=target,
        private=private,
        create_pr=pr,
        model_config={k: v for k, v in config.items() if k not in _TIMM_CONFIG_KEYS},
        safe_serialization=True,
    )
    logger.info("pushed %s to %s (card %s)", judge_dir, repo_id, card)
    return JudgePush(repo_id, str(getattr(commit, "commit_url", commit)), card)


def push_report(
    report_dir: str | Path,
    repo_id: str,
    repo_type: str = "model",
    path_in_repo: str = "evaluation",
    private: bool = False,
    revision: str | None = None,
    commit_message: str = "Add dataigm evaluation report",
    title: str | None = None,
    api: HfApi | None = None,
) -> str:
    """Publish a ``dataigm evaluate`` report folder with its card under ``path_in_repo``; returns the commit URL.

    Uploaded in one commit: ``README.md`` (the card, refreshed), ``report.json``, ``report.md``, the resolved
    config and the charts and grids; the cache and the generated images stay local.

    Raises:
        ValueError: a bad ``repo_id``, ``repo_type`` (``model`` or ``dataset``) or ``path_in_repo`` (it must
            name a folder, so that the report's README does not replace the repository's card), or a folder
            without ``report.json``.
    """
    check_repo_id(repo_id)
    if repo_type not in REPO_TYPES:
        raise ValueError(f"repo_type {repo_type!r} is not one of: {', '.join(REPO_TYPES)}")
    prefix = path_in_repo.strip("/")
    if not prefix or any(part in ("", ".", "..") for part in prefix.split("/")):
        raise ValueError(
            f"path_in_repo {path_in_repo!r} must name a folder inside the repository, e.g. 'evaluation/' "
            "(at the top level the report's README.md would replace the repository's card)"
        )
    write_eval_card(report_dir, title)
    files = report_files(report_dir)
    api = _api(api)
    _create(api, repo_id, repo_type, private, revision)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(report_dir),
        path_in_repo=prefix,
        repo_type=repo_type,
        revision=revision,
        commit_message=commit_message,
        allow_patterns=files,
    )
    logger.info("pushed the report %s to %s:%s/", report_dir, repo_id, prefix)
    return str(getattr(info, "commit_url", info))


def push_attacks(
    files: list[str | Path],
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    commit_message: str = "Add dataigm adversarial prompts",
    license: str = "other",
    api: HfApi | None = None,
) -> str:
    """Publish attack prompt files (``dataigm attack``) as a dataset repository with a card naming their
    provenance (:mod:`cards.attack_card`); returns the commit URL.

    Uploaded in one commit: ``README.md`` and each file under ``data/``.

    Raises:
        ValueError: a bad ``repo_id``, two files with one name, or a file without attack provenance.
    """
    import shutil

    from .attack_card import attack_card

    check_repo_id(repo_id)
    names = [Path(f).name for f in files]
    if not files or len(set(names)) != len(names):
        raise ValueError(f"Give attack prompt files with distinct names, got {names}")
    card = attack_card(files, license=license)  # reads and checks every file before anything is uploaded
    api = _api(api)
    with TemporaryDirectory() as tmp:
        (Path(tmp) / "data").mkdir()
        for f in files:
            shutil.copyfile(f, Path(tmp) / "data" / Path(f).name)
        (Path(tmp) / "README.md").write_text(card, encoding="utf-8")
        _create(api, repo_id, "dataset", private, revision)
        info = api.upload_folder(
            repo_id=repo_id, folder_path=tmp, repo_type="dataset", revision=revision, commit_message=commit_message
        )
    logger.info("pushed %d attack prompt file(s) to %s", len(files), repo_id)
    return str(getattr(info, "commit_url", info))
