"""Cards: dataset, judge and evaluation cards and their plots, and publishing to the Hub."""

from .dataset_card import render_body, size_category, write_dataset_card
from .eval_card import eval_card, report_files, write_eval_card
from .judge_card import judge_card, write_judge_card
from .limitations import limitations
from .push import JudgePush, push_dataset, push_judge, push_report

__all__ = [
    "JudgePush",
    "eval_card",
    "judge_card",
    "limitations",
    "push_dataset",
    "push_judge",
    "push_report",
    "render_body",
    "report_files",
    "size_category",
    "write_dataset_card",
    "write_eval_card",
    "write_judge_card",
]
