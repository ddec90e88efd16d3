"""Markdown pieces shared by every card and report: tables, escaped cells, numbers with intervals, images.

It lives in ``dataigm`` so that ``cards`` and the evaluation (``detectors``), which never import each
other, render with the same helpers.
"""

from __future__ import annotations

from collections.abc import Sequence


def table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub-flavoured Markdown table; cells are written with ``str`` (escape free text with :func:`escape`)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def escape(text: object) -> str:
    """``text`` made safe for one table cell: ``|`` escaped, line breaks turned into spaces."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def number(value: float | None, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals, or ``-`` when there is none."""
    return "-" if value is None else f"{value:.{digits}f}"


def with_ci(value: float | None, low: float | None = None, high: float | None = None, n: int | None = None) -> str:
    """``0.912 [0.880, 0.940]`` (the interval when known), with ``(n=...)`` when ``n`` is given."""
    if value is None:
        return "-"
    text = number(value)
    if low is not None and high is not None:
        text += f" [{number(low)}, {number(high)}]"
    return text if n is None else f"{text} (n={n})"


def image(path: str, alt: str) -> str:
    """An image link relative to the document (the file sits next to it)."""
    return f"![{alt}]({path})"
