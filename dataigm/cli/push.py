"""``dataigm push dataset|judge|report|attacks``: publish to the Hugging Face Hub.

The token comes from huggingface_hub (``HF_TOKEN`` or ``hf auth login``) and is never printed or written.
``dataigm judge push`` is this module's ``push judge``: the same parser and the same function.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Literal

from .common import command_parser
from .options import add_options

HELP = "publish a dataset root, a judge, an evaluation report or attack prompt files to the Hugging Face Hub"


@dataclass(kw_only=True)
class _HubTarget:
    """Where a push goes.

    Attributes:
        repo: Hub repository ORG/NAME (created when missing)
        private: create the repository private
        revision: branch to push to (created if missing)
    """

    repo: str
    private: bool = False
    revision: str | None = None


@dataclass(kw_only=True)
class DatasetPush(_HubTarget):
    """``dataigm push dataset``.

    Attributes:
        root: dataset root
        commit_message: commit message
    """

    root: str
    commit_message: str | None = None


@dataclass(kw_only=True)
class JudgePush(_HubTarget):
    """``dataigm push judge`` (= ``dataigm judge push``).

    Attributes:
        judge: folder of a saved judge (OUT/judge of `dataigm judge train`); or give it as --judge
        eval: `dataigm judge eval` folder of this judge
        agreement: `dataigm judge agree` folder whose section (and kappa matrices) the card shows
        overwrite_card: replace a README.md already in the repository
        dataset_repo: training dataset's Hub id, ORG/NAME
        license: license of the judge (Hub license id)
        commit_message: commit message
        create_pr: open a pull request instead of committing
    """

    judge: str | None = None
    eval: str | None = None
    agreement: str | None = None
    overwrite_card: bool = False
    dataset_repo: str | None = None
    license: str = "other"
    commit_message: str = "Add dataigm judge"
    create_pr: bool = False


@dataclass(kw_only=True)
class ReportPush(_HubTarget):
    """``dataigm push report``.

    Attributes:
        report: `dataigm evaluate` output folder (report.json, plots)
        repo_type: kind of repository the report goes into, beside a dataset or a model
        path_in_repo: folder of the report in the repository
        title: title of the report's card
        commit_message: commit message
    """

    report: str
    repo_type: Literal["model", "dataset"] = "model"
    path_in_repo: str = "evaluation/"
    title: str | None = None
    commit_message: str = "Add dataigm evaluation report"


@dataclass(kw_only=True)
class AttacksPush(_HubTarget):
    """``dataigm push attacks``.

    Attributes:
        files: attack prompt files written by `dataigm attack` (published under data/ with a card of their provenance)
        license: license of the prompt set (Hub license id)
        commit_message: commit message
    """

    files: list[str]
    license: str = "other"
    commit_message: str = "Add dataigm adversarial prompts"


def _configure_attacks(parser) -> None:
    add_options(parser, AttacksPush, positional=("files",))


def _run_attacks(args) -> int:
    from cards.push import push_attacks

    url = push_attacks(
        list(args.files),
        args.repo,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
        license=args.license,
    )
    print(f"pushed {len(args.files)} attack prompt file(s) to {args.repo}: {url}")
    return 0


def _configure_dataset(parser) -> None:
    add_options(parser, DatasetPush, positional=("root",))


def _run_dataset(args) -> int:
    from cards import push_dataset

    url = push_dataset(
        args.root, args.repo, private=args.private, revision=args.revision, commit_message=args.commit_message
    )
    print(f"pushed {args.root} to {url}")
    return 0


def run_judge_push(judge_dir: str, args) -> int:
    """Push the judge in ``judge_dir`` with its card: ``dataigm push judge`` and its alias ``dataigm judge push``."""
    from cards import push_judge

    pushed = push_judge(
        judge_dir,
        args.repo,
        eval_dir=args.eval,
        agreement_dir=args.agreement,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
        create_pr=args.create_pr,
        overwrite_card=args.overwrite_card,
        dataset_repo=args.dataset_repo,
        license=args.license,
    )
    note = "card written" if pushed.card == "written" else "README already on the Hub kept (--overwrite-card)"
    print(f"pushed {judge_dir} to {pushed.repo_id} ({note}): {pushed.commit_url}")
    return 0


def _configure_judge(parser) -> None:
    add_options(parser, JudgePush, positional=("judge",))
    # `dataigm judge push --judge DIR`, the form of the judge commands, is the same folder
    parser.add_argument("--judge", dest="judge_dir", type=str | None, default=None, help="the judge folder")


def _run_judge(args) -> int:
    if (args.judge is None) == (args.judge_dir is None):
        raise ValueError("give the judge folder once: as JUDGE_DIR or as --judge JUDGE_DIR")
    return run_judge_push(args.judge or args.judge_dir, args)


def _configure_report(parser) -> None:
    add_options(parser, ReportPush, positional=("report",))


def _run_report(args) -> int:
    from cards import push_report

    url = push_report(
        args.report,
        args.repo,
        repo_type=args.repo_type,
        path_in_repo=args.path_in_repo,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
        title=args.title,
    )
    print(f"pushed {args.report} to {args.repo}/{args.path_in_repo.strip('/')}: {url}")
    return 0


ACTIONS = {
    "dataset": SimpleNamespace(
        HELP="upload a dataset root as a Hub dataset repository (validated, card refreshed, resumable)",
        configure=_configure_dataset,
        run=_run_dataset,
    ),
    "judge": SimpleNamespace(
        HELP="upload a judge with its card (timm's push_to_hf_hub; a README on the Hub is kept)",
        configure=_configure_judge,
        run=_run_judge,
    ),
    "report": SimpleNamespace(
        HELP="upload a `dataigm evaluate` report with its card into a folder of a repository",
        configure=_configure_report,
        run=_run_report,
    ),
    "attacks": SimpleNamespace(
        HELP="upload adversarial prompt files of `dataigm attack` as a dataset with a card naming their provenance",
        configure=_configure_attacks,
        run=_run_attacks,
    ),
}


def configure(parser) -> None:
    sub = parser.add_subcommands(dest="what")
    for name, action in ACTIONS.items():
        command = command_parser(action.HELP)
        sub.add_subcommand(name, command, help=action.HELP)  # attach first, then configure (jsonargparse)
        action.configure(command)


def run(cfg) -> int:
    return ACTIONS[cfg.what].run(cfg[cfg.what])
