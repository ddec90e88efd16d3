"""What ``dataigm judge eval`` and ``dataigm judge agree`` share: the options of running judges over one split of a
dataset root, their check before anything is loaded, and loading the judges.

Light: ``detectors`` (torch) is imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(kw_only=True)
class JudgeRunOptions:
    """The options of judging every image of a split.

    Attributes:
        split: split to measure on
        concept: dataset concept for a one-concept baseline judge
        bootstrap: bootstrap resamples of the intervals (0: no intervals)
        ci: confidence level of the intervals
        seed: bootstrap seed
        batch_size: images per judge call
        num_workers: processes that read the images (default: the host's cores less one, at most 8; none for fewer
            than 4 batches or images under 128x128 px; 0: in this process); no number depends on it
        device: auto (CUDA when available, else CPU), cpu, cuda, cuda:N or mps
        progress: show a progress bar
    """

    split: str = "test"
    concept: str | None = None
    bootstrap: int = 1000
    ci: float = 0.95
    seed: int = 0
    batch_size: int = 32
    num_workers: int | None = None
    device: str = "auto"
    progress: bool = True


def check_run_options(cfg) -> None:
    """Refuse a bad data root, split, concept or run option (before any judge or image is loaded).

    Args:
        cfg: the parsed options of a command whose options extend :class:`JudgeRunOptions` and have ``data``.
    """
    from detectors.audit.judge_eval import check_eval_options

    check_eval_options(cfg.data, cfg.split, cfg.concept, cfg.bootstrap, cfg.ci, cfg.batch_size, cfg.num_workers)


def run_arguments(cfg) -> dict:
    """The keyword arguments of ``evaluate_judge`` and ``judge_agreement`` from the parsed options."""
    return {
        "split": cfg.split,
        "concept": cfg.concept,
        "n_boot": cfg.bootstrap,
        "ci": cfg.ci,
        "seed": cfg.seed,
        "batch_size": cfg.batch_size,
        "num_workers": cfg.num_workers,
        "progress": cfg.progress,
    }


def load_judges(specs: list[str], device: str) -> dict:
    """``{spec: judge}``; a missing optional dependency of a baseline judge is the user's error (one line)."""
    from detectors.judges import load_judge

    judges = {}
    for spec in specs:
        try:
            judges[spec] = load_judge(spec, device=device)  # each judge kind resolves auto
        except ImportError as err:
            raise ValueError(str(err)) from None
    return judges
