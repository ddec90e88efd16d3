"""Cards: dataset, judge and evaluation cards and their plots, and publishing to the Hub."""

from .dataset_card import render_body, size_category, write_dataset_card
from .push import push_dataset

__all__ = ["push_dataset", "render_body", "size_category", "write_dataset_card"]
