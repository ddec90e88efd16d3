"""``dataigm card``: write a card as README.md: a dataset root's (``ROOT``), a judge's (``--judge DIR [--eval
EVAL_DIR]``) or an evaluation report's (``--report DIR``)."""

from __future__ import annotations

from dataclasses import dataclass

from .options import add_options

HELP = "write the card (README.md) of a dataset root, a judge (--judge) or an evaluation report (--report)"


@dataclass
class CardOptions:
    """The options of ``dataigm card``: give exactly one of ROOT, --judge and --report.

    Attributes:
        root: dataset root: write its dataset card
        judge: judge folder: write its model card there
        eval: with --judge: its `dataigm judge eval` folder
        agreement: with --judge: a `dataigm judge agree` folder whose section (and kappa matrices) the card shows
        report: `dataigm evaluate` folder: write its card
        repo: Hub repo id used in the loading examples
        dataset_repo: with --judge: training dataset's Hub id
        license: license of the dataset or judge (Hub license id)
    """

    root: str | None = None
    judge: str | None = None
    eval: str | None = None
    agreement: str | None = None
    report: str | None = None
    repo: str | None = None
    dataset_repo: str | None = None
    license: str = "other"


def configure(parser) -> None:
    add_options(parser, CardOptions, positional=("root",))


def run(cfg) -> int:
    modes = [name for name in ("root", "judge", "report") if cfg.get(name)]
    if len(modes) != 1:
        given = ", ".join(modes) or "none"
        raise ValueError(f"Give exactly one of: a dataset ROOT, --judge DIR, --report DIR (given: {given})")
    for name in ("eval", "agreement"):
        if cfg.get(name) and not cfg.judge:
            raise ValueError(f"--{name} goes with --judge DIR (the judge whose `dataigm judge {name}` folder it is)")
    if cfg.judge:
        from cards import write_judge_card

        path = write_judge_card(
            cfg.judge,
            cfg.eval,
            repo_id=cfg.repo,
            dataset_repo=cfg.dataset_repo,
            license=cfg.license,
            agreement_dir=cfg.agreement,
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
