"""``dataigm push dataset ROOT --repo ORG/NAME``: publish to the Hugging Face Hub."""

from __future__ import annotations

from .common import command_parser

HELP = "publish a dataset root to the Hugging Face Hub"


def configure(parser) -> None:
    sub = parser.add_subcommands(dest="what")
    dataset = command_parser("upload a dataset root (validated, card refreshed, resumable)")
    sub.add_subcommand("dataset", dataset, help="upload a dataset root as a Hub dataset repository")
    dataset.add_argument("root", help="dataset root")
    dataset.add_argument("--repo", required=True, help="Hub repo id, ORG/NAME")
    dataset.add_argument("--private", type=bool, default=False, help="create the repository private")
    dataset.add_argument("--revision", type=str | None, default=None, help="branch to push to (created if missing)")
    dataset.add_argument("--commit-message", type=str | None, default=None, help="commit message")


def run(cfg) -> int:
    from cards import push_dataset

    args = cfg[cfg.what]
    url = push_dataset(
        args.root, args.repo, private=args.private, revision=args.revision, commit_message=args.commit_message
    )
    print(f"pushed {args.root} to {url}")
    return 0
