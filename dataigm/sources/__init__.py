"""Web and Hub sources of a dataset root, at scale.

* :func:`ingest_urls`: a LAION-style URL list (parquet, CSV, JSONL), selected by caption and ``--where``,
  downloaded by img2dataset, written as ``laion`` shards (:mod:`dataigm.sources.web`).
* :func:`ingest_hf_dataset` / :func:`plan_hf_stream`: a Hugging Face dataset streamed, rows chosen by ``--where``
  and labelled by ``--class-map`` (:mod:`dataigm.sources.hub`).
* :class:`CaptionRules` (labels from captions), :class:`RowFilter` (``--where``).

Both resume after a kill and refuse bad input before writing anything. Importing this package loads pandas.
"""

from .captions import CaptionRules, parse_words
from .hub import HubPlan, ingest_hf_dataset, plan_hf_stream
from .url_list import UrlSelection, read_url_list, select_rows
from .web import WebIngestReport, ingest_urls
from .where import RowFilter, parse_where

__all__ = [
    "CaptionRules",
    "HubPlan",
    "RowFilter",
    "UrlSelection",
    "WebIngestReport",
    "ingest_hf_dataset",
    "ingest_urls",
    "parse_where",
    "parse_words",
    "plan_hf_stream",
    "read_url_list",
    "select_rows",
]
