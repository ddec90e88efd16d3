"""``dataigm card``: write a card as README.md: a dataset root's (``ROOT``), a judge's (``--judge DIR [--eval
EVAL_DIR]``) or an evaluation report's (``--report DIR``)."""

from __future__ import annotations

HELP = "write the card (README.md) of a dataset root, a judge (--judge) or an evaluation report (--report)"


def configure(parser) -> None:
    parser.add_argument("root", nargs="?", default=None, help="dataset root")
    parser.add_argument("--judge", type=str | None, default=None, help="judge folder: write its model card there")
    parser.add_argument("--eval", type=str | None, default=None, help="with --judge: its `dataigm judge eval` folder")
    parser.add_argument("--report", type=str | None, default=None, help="`dataigm evaluate` folder: write its card")
    parser.add_argument("--repo", type=str | None, default=None, help="Hub repo id used in the loading examples")
    parser.add_argument(
        "--dataset-repo", type=str | None, default=None, help="with --judge: training dataset's Hub id"
    )
    parser.add_argument("--license", default="other", help="license of the dataset or judge (Hub license id)")


def run(cfg) -> int:
    modes = [name for name in ("root", "judge", "report") if cfg.get(name)]
    if len(modes) != 1:
        given = ", ".join(modes) or "none"
        raise ValueError(f"Give exactly one of: a dataset ROOT, --judge DIR, --report DIR (given: {given})")
    if cfg.eval and not cfg.judge:
        raise ValueError("--eval goes with --judge DIR (the judge whose `dataigm judge eval` folder it is)")
    if cfg.judge:
        from cards import write_judge_card

        path = write_judge_card(
            cfg.judge, cfg.eval, repo_id=cfg.repo, dataset_repo=cfg.dataset_repo, license=cfg.license
        )
    elif cfg.report:
        from cards import write_eval_card

        path = write_eval_card(cfg.report)
    else:
        from cards import write_dataset_card

        path = write_dataset_card(cfg.root, repo_id=cfg.repo, license=cfg.license)
    print(f"wrote {path}")
    return 0


def refresh_card(root) -> None:
    """Called after every command that writes to a root, so the card's counts stay true."""
    from cards import write_dataset_card

    write_dataset_card(root)
