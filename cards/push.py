"""Publishing to the Hugging Face Hub. The token comes from huggingface_hub's usual sources
(``HF_TOKEN``, ``hf auth login``) and is never printed, logged or written by us."""

from __future__ import annotations

import logging
from pathlib import Path

from dataigm.validate import validate_root

from .dataset_card import write_dataset_card

logger = logging.getLogger(__name__)


def _api(api=None):
    if api is not None:
        return api
    from huggingface_hub import HfApi

    return HfApi()


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
    logger.info("pushed %s to %s", root, repo_id)
    return str(url)
