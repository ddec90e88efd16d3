"""Matplotlib figures for files: the object API on an Agg canvas, no pyplot state (safe in any thread)."""

from __future__ import annotations


def agg_figure(size: tuple[float, float], layout: str | None = None):
    """A ``matplotlib.figure.Figure`` of ``size`` inches with an Agg canvas, ready for ``savefig``.

    ``layout`` is matplotlib's layout engine (``"constrained"``...); None keeps the fixed margins, which cost
    less to draw (a layout engine took 40% of a small figure's time here).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout=layout)
    FigureCanvasAgg(figure)
    return figure
