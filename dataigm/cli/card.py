"""``dataigm card ROOT``: regenerate a dataset root's README as its full dataset card."""

from __future__ import annotations

HELP = "regenerate the dataset card (README.md) of a dataset root"


def configure(parser) -> None:
    parser.add_argument("root", help="dataset root")
    parser.add_argument("--repo", type=str | None, default=None, help="Hub repo id used in the loading examples")
    parser.add_argument("--license", default="other", help="license of the dataset as a whole (Hub license id)")


def run(cfg) -> int:
    from cards import write_dataset_card

    print(f"wrote {write_dataset_card(cfg.root, repo_id=cfg.repo, license=cfg.license)}")
    return 0


def refresh_card(root) -> None:
    """Called after every command that writes to a root, so the card's counts stay true."""
    from cards import write_dataset_card

    write_dataset_card(root)
