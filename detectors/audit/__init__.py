"""Measuring a judge (``dataigm judge eval``): metrics per concept x source x method with intervals, plots."""
