"""The Markdown helpers of the cards: the one implementation is :mod:`dataigm.markdown`."""

from dataigm.markdown import escape, image, number, table, with_ci

__all__ = ["escape", "image", "number", "table", "with_ci"]
