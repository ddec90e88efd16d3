"""Publish a saved judge to the Hugging Face Hub with ``timm.models.push_to_hf_hub``.

The pushed ``config.json`` carries the same keys as the local one (concepts, temperatures,
thresholds, rule, dataset revision, metrics). The model card is timm's default until the cards
package provides the judge card.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .judge import DATA_CONFIG_KEYS, JUDGE_FORMAT

logger = logging.getLogger(__name__)

# config.json keys written by save_judge that push_to_hf_hub must write again
OUR_KEYS = (
    "judge_format",
    "label_names",
    "concepts",
    "class_names",
    "temperatures",
    "thresholds",
    "threshold_rule",
    "dataset",
    "metrics",
    "training",
)


def push_judge(
    judge_dir: str | Path,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str = "Add dataigm judge",
    create_pr: bool = False,
):
    """Upload the judge saved in ``judge_dir`` to ``repo_id`` (created when missing); returns timm's commit info.

    Raises:
        ValueError: ``judge_dir`` is not a judge folder, or ``repo_id`` is not ``ORG/NAME``.
    """
    import timm
    from timm.models import push_to_hf_hub

    judge_dir = Path(judge_dir)
    config_path = judge_dir / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{judge_dir} is not a judge folder: config.json is missing")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("judge_format") != JUDGE_FORMAT:
        raise ValueError(
            f"{judge_dir} does not hold a dataigm judge (config.json judge_format is not {JUDGE_FORMAT!r})"
        )
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"Repository {repo_id!r} must be ORG/NAME")
    model = timm.create_model(f"local-dir:{judge_dir}", pretrained=True)
    model_config = {k: config[k] for k in OUR_KEYS if k in config}
    data_config = {k: config["pretrained_cfg"][k] for k in DATA_CONFIG_KEYS if k in config.get("pretrained_cfg", {})}
    logger.info("pushing %s to %s", judge_dir, repo_id)
    return push_to_hf_hub(
        model,
        repo_id,
        commit_message=commit_message,
        token=token,
        revision=revision,
        private=private,
        create_pr=create_pr,
        model_config=model_config,
        data_config=data_config,
        safe_serialization=True,
    )
