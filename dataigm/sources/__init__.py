"""The sources of a dataset root: a folder, a Hugging Face dataset, a URL list.

* :mod:`dataigm.sources.config`: one options class per source (:class:`FolderSource`, :class:`HubSource`,
  :class:`UrlListSource`), from which the CLI flags, the recipe steps' keys and the recorded job config are made.
* :mod:`dataigm.sources.folder`: a folder of labelled images (:func:`ingest_folder`, :func:`plan_folder`).
* :func:`ingest_urls`: a LAION-style URL list (parquet, CSV, JSONL), selected by caption and ``--where``,
  downloaded by img2dataset, written as ``laion`` shards (:mod:`dataigm.sources.web`).
* :func:`ingest_hf_dataset` / :func:`plan_hf_stream`: a Hugging Face dataset streamed, rows chosen by ``--where``
  and labelled by ``--class-map`` (:mod:`dataigm.sources.hub`).
* :class:`CaptionRules` (labels from captions), :class:`RowFilter` (``--where``).

Every source plans :class:`~dataigm.sources.items.IngestItem` s (or download rows) and writes through the one shard
job; all resume after a kill and refuse bad input before writing anything. The names below are imported when first
used, so ``dataigm.sources.config`` stays light (the URL-list and ``--where`` modules load pandas).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CaptionRules": "captions",
    "parse_words": "captions",
    "FolderSource": "config",
    "HubSource": "config",
    "UrlListSource": "config",
    "ingest_folder": "folder",
    "plan_folder": "folder",
    "HubPlan": "hub",
    "ingest_hf_dataset": "hub",
    "plan_hf_stream": "hub",
    "UrlSelection": "url_list",
    "read_url_list": "url_list",
    "select_rows": "url_list",
    "WebIngestReport": "web",
    "ingest_urls": "web",
    "RowFilter": "where",
    "parse_where": "where",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
