"""``dataigm push dataset|judge|report``: publish to the Hugging Face Hub.

The token comes from huggingface_hub (``HF_TOKEN`` or ``hf auth login``) and is never printed or written.
"""

from __future__ import annotations

from types import SimpleNamespace

from .common import command_parser
from .options import add_flag

HELP = "publish a dataset root, a judge or an evaluation report to the Hugging Face Hub"


def _common(parser, repo_help: str) -> None:
    parser.add_argument("--repo", required=True, help=repo_help)
    add_flag(parser, "--private", False, "create the repository private")
    parser.add_argument("--revision", type=str | None, default=None, help="branch to push to (created if missing)")


def _configure_dataset(parser) -> None:
    parser.add_argument("root", help="dataset root")
    _common(parser, "Hub dataset repository, ORG/NAME")
    parser.add_argument("--commit-message", type=str | None, default=None, help="commit message")


def _run_dataset(args) -> int:
    from cards import push_dataset

    url = push_dataset(
        args.root, args.repo, private=args.private, revision=args.revision, commit_message=args.commit_message
    )
    print(f"pushed {args.root} to {url}")
    return 0


def add_judge_push_options(parser) -> None:
    """The options of ``dataigm push judge`` (= ``dataigm judge push``) besides the judge and the repository."""
    parser.add_argument("--eval", type=str | None, default=None, help="`dataigm judge eval` folder of this judge")
    add_flag(parser, "--overwrite-card", False, "replace a README.md already in the repository")
    parser.add_argument("--dataset-repo", type=str | None, default=None, help="training dataset's Hub id, ORG/NAME")
    parser.add_argument("--license", default="other", help="license of the judge (Hub license id)")
    parser.add_argument("--commit-message", default="Add dataigm judge", help="commit message")
    add_flag(parser, "--create-pr", False, "open a pull request instead of committing")


def run_judge_push(judge_dir: str, args) -> int:
    """Push the judge in ``judge_dir`` with its card: ``dataigm push judge`` and its alias ``dataigm judge push``."""
    from cards import push_judge

    pushed = push_judge(
        judge_dir,
        args.repo,
        eval_dir=args.eval,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
        create_pr=args.create_pr,
        overwrite_card=args.overwrite_card,
        dataset_repo=args.dataset_repo,
        license=args.license,
    )
    note = "card written" if pushed.card == "written" else "README already on the Hub kept (--overwrite-card true)"
    print(f"pushed {judge_dir} to {pushed.repo_id} ({note}): {pushed.commit_url}")
    return 0


def _configure_judge(parser) -> None:
    parser.add_argument(
        "judge", nargs="?", default=None, help="folder of a saved judge (OUT/judge of `dataigm judge train`)"
    )
    parser.add_argument(
        "--judge", dest="judge_dir", type=str | None, default=None, help="the judge folder as an option (either form)"
    )
    _common(parser, "Hub model repository, ORG/NAME")
    add_judge_push_options(parser)


def _run_judge(args) -> int:
    if (args.judge is None) == (args.judge_dir is None):
        raise ValueError("give the judge folder once: as JUDGE_DIR or as --judge JUDGE_DIR")
    return run_judge_push(args.judge or args.judge_dir, args)


def _configure_report(parser) -> None:
    parser.add_argument("report", help="`dataigm evaluate` output folder (report.json, plots)")
    _common(parser, "Hub repository, ORG/NAME, of the dataset or model the report goes beside")
    parser.add_argument("--repo-type", default="model", choices=["model", "dataset"], help="kind of repository")
    parser.add_argument("--path-in-repo", default="evaluation/", help="folder of the report in the repository")
    parser.add_argument("--title", type=str | None, default=None, help="title of the report's card")
    parser.add_argument("--commit-message", default="Add dataigm evaluation report", help="commit message")


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
}


def configure(parser) -> None:
    sub = parser.add_subcommands(dest="what")
    for name, action in ACTIONS.items():
        command = command_parser(action.HELP)
        sub.add_subcommand(name, command, help=action.HELP)  # attach first, then configure (jsonargparse)
        action.configure(command)


def run(cfg) -> int:
    return ACTIONS[cfg.what].run(cfg[cfg.what])
