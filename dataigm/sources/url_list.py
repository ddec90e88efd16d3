"""URL lists in LAION's metadata layout: read, filter with ``--where``, label by caption, cap per class.

A URL list is a parquet, CSV or JSONL file (or a folder of parquet files) with a URL column (``url`` or ``URL``)
and a caption column (``caption`` or ``TEXT``); other columns (``similarity``, ``punsafe``, ``pwatermark``,
``LICENSE``, ...) are kept and travel with each sample. The selection is a pure function of the file and the
options, so a re-run selects the same rows.

A URL list is third-party data: :func:`url_refusal` keeps the downloader to public web addresses. A row whose URL
is not ``http``/``https`` (``file:``, ``ftp:``, ``data:``: img2dataset's ``urllib`` would open them), or names
``localhost`` or a loopback, link-local (``169.254.0.0/16``, cloud metadata; ``fe80::/10``), private, unspecified or
other non-public IP address, is left out and counted by reason before anything is downloaded; private addresses
are let through only with ``allow_private_addresses`` (``--allow-private-addresses``). Addresses are read as the
resolver would read them: IPv6 (also IPv4-mapped), and IPv4 in the forms ``inet_aton`` accepts (``2130706433``,
``0x7f.1``, ``127.1``, ``0177.0.0.1``), after IDNA normalisation of the host. What this cannot see: a public
name that resolves to a private address (img2dataset resolves names itself), and redirects (``urllib`` follows
up to 10, to ``http``, ``https`` or ``ftp`` URLs, private ones included).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import socket
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd

from .captions import CaptionRules
from .where import RowFilter

URL_COLUMNS = ("url", "URL")
CAPTION_COLUMNS = ("caption", "TEXT", "text")
LICENSE_COLUMNS = ("LICENSE", "license")
URL_FILE_FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


@dataclass
class UrlSelection:
    """The rows of a URL list chosen for one concept, with the counts of how they were chosen.

    Attributes:
        rows: one row per selected image, in file order: ``row`` (its index in the file), ``url``, ``caption``,
            ``label``, ``license`` and ``metadata`` (the other columns as a JSON object).
        seen: rows in the file.
        passed_where: rows left after ``--where``.
        matched: rows whose caption selects a class, per class (before ``--max-per-class``).
        selected: rows kept per class.
        refused: rows whose caption selects a class but whose URL is refused (:func:`url_refusal`), per reason.
    """

    rows: pd.DataFrame
    seen: int
    passed_where: int
    matched: dict[str, int] = field(default_factory=dict)
    selected: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict:
        """The counts as a JSON-ready mapping."""
        return {
            "rows_seen": self.seen,
            "rows_after_where": self.passed_where,
            "rows_matched": dict(sorted(self.matched.items())),
            "urls_refused": dict(sorted(self.refused.items(), key=lambda kv: (-kv[1], kv[0]))),
            "rows_selected": dict(sorted(self.selected.items())),
        }


def read_url_list(path: str | Path) -> pd.DataFrame:
    """Read a URL list (parquet, CSV, JSONL, or a folder of parquet files).

    Raises:
        ValueError: the file does not exist, has another format, or does not parse; the message says which.
    """
    text = str(path)
    local = Path(path)
    if "://" not in text and not local.exists():
        raise ValueError(f"--urls {text!r}: no such file")
    suffix = ".parquet" if local.is_dir() else local.suffix.lower()
    kind = URL_FILE_FORMATS.get(suffix)
    if kind is None:
        raise ValueError(
            f"--urls {text!r}: unknown format {suffix or '(no suffix)'!r}; valid: {', '.join(URL_FILE_FORMATS)}"
        )
    try:
        if kind == "parquet":
            return pd.read_parquet(path)
        if kind == "csv":
            return pd.read_csv(path, keep_default_na=False, na_values=[""])
        return pd.read_json(path, lines=True)
    except (OSError, ValueError, ImportError) as err:
        reason = " ".join(str(err).split())[:300] or type(err).__name__
        raise ValueError(f"--urls {text!r} is not a readable {kind} URL list ({reason})") from None
    except Exception as err:  # pyarrow and the CSV parser raise their own types for a malformed file
        if type(err).__module__.split(".")[0] not in ("pyarrow", "pandas"):
            raise
        reason = " ".join(str(err).split())[:300] or type(err).__name__
        raise ValueError(f"--urls {text!r} is not a readable {kind} URL list ({reason})") from None


SCHEMES = ("http", "https")
# what allow_private_addresses lets through: every address that is not public
PRIVATE_REASONS = ("localhost", "loopback address", "link-local address", "private address", "unspecified address")
PRIVATE_REASONS += ("reserved address",)
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$")  # inet_aton's IPv4 forms


def url_refusal(url: str, allow_private_addresses: bool = False) -> str | None:
    """Why ``url`` is not downloaded, or None when it may be: a short, countable reason.

    Reasons: ``malformed URL``, ``<scheme>: URL (only http and https)``, ``no host``, and, unless
    ``allow_private_addresses``, ``localhost``, ``loopback address``, ``link-local address``, ``private address``,
    ``unspecified address``, ``reserved address`` (multicast, reserved, shared and other non-public ranges).
    """
    if any(c.isspace() or c == "\\" or ord(c) < 32 for c in url):
        return "malformed URL"  # parsers disagree on such URLs: the host we check might not be the one fetched
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "malformed URL"
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        return f"{scheme or 'no scheme'}: URL (only http and https)"
    if not host:
        return "no host"
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host  # as the resolver will see it
    except UnicodeError:
        return "malformed URL"
    host = host.rstrip(".").lower()
    reason = _host_refusal(host)
    if reason is None or (allow_private_addresses and reason in PRIVATE_REASONS):
        return None
    return reason


def _host_refusal(host: str) -> str | None:
    if host == "localhost" or host.endswith(".localhost"):
        return "localhost"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not _NUMERIC_HOST.match(host):
            return None  # a name: what it resolves to is not seen here
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return "malformed URL"
    if address.version == 6 and (address.ipv4_mapped or address.sixtofour):
        address = address.ipv4_mapped or address.sixtofour
    if address.is_loopback:
        return "loopback address"
    if address.is_link_local:
        return "link-local address"
    if address.is_unspecified:
        return "unspecified address"
    if address.is_private:
        return "private address"
    if address.is_multicast or address.is_reserved or not address.is_global:
        return "reserved address"
    return None


def find_column(frame: pd.DataFrame, given: str | None, candidates: tuple[str, ...], what: str, option: str) -> str:
    """The column holding ``what``: ``given``, else the first of ``candidates`` present.

    Raises:
        ValueError: naming the columns that exist.
    """
    names = [str(c) for c in frame.columns]
    if given is not None:
        if given not in names:
            raise ValueError(f"{option} {given!r}: no such column; columns: {', '.join(names)}")
        return given
    for name in candidates:
        if name in names:
            return name
    raise ValueError(
        f"the URL list has no {what} column ({' or '.join(candidates)}); columns: {', '.join(names)} "
        f"(name it with {option})"
    )


def _jsonable(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return value if isinstance(value, (str, int, float, bool, list, dict)) else str(value)


def select_rows(
    frame: pd.DataFrame,
    rules: CaptionRules,
    where: RowFilter | None = None,
    max_per_class: int | None = None,
    url_column: str | None = None,
    caption_column: str | None = None,
    allow_private_addresses: bool = False,
) -> UrlSelection:
    """Filter ``frame`` with ``where``, label each caption with ``rules``, leave out the rows whose URL is refused
    (:func:`url_refusal`, counted by reason) and keep the first ``max_per_class`` rows of each class (file order).

    Raises:
        ValueError: a missing URL or caption column (naming the columns that exist), a bad ``max_per_class``.
    """
    if max_per_class is not None and max_per_class < 1:
        raise ValueError(f"--max-per-class must be at least 1, got {max_per_class}")
    url_col = find_column(frame, url_column, URL_COLUMNS, "URL", "--url-column")
    caption_col = find_column(frame, caption_column, CAPTION_COLUMNS, "caption", "--caption-column")
    license_col = next((c for c in LICENSE_COLUMNS if c in frame.columns), None)
    seen = len(frame)
    frame = frame.reset_index(drop=True)
    frame.insert(0, "__row", range(len(frame)))
    if where is not None:
        frame = where.apply(frame)
    passed = len(frame)
    labels = frame[caption_col].map(rules.label)
    url_ok = frame[url_col].map(lambda u: isinstance(u, str) and bool(u.strip()))
    frame, labels = frame[labels.notna() & url_ok], labels[labels.notna() & url_ok]
    matched = Counter(labels)
    refusals = frame[url_col].map(lambda u: url_refusal(u.strip(), allow_private_addresses))
    refused = dict(sorted(Counter(refusals.dropna()).items(), key=lambda kv: (-kv[1], kv[0])))
    frame, labels = frame[refusals.isna()], labels[refusals.isna()]
    if max_per_class is not None:
        keep = labels.groupby(labels).cumcount() < max_per_class
        frame, labels = frame[keep], labels[keep]
    extra = [c for c in frame.columns if c not in ("__row", url_col, caption_col)]
    rows = pd.DataFrame(
        {
            "row": frame["__row"].astype("int64"),
            "url": frame[url_col].str.strip(),
            "caption": frame[caption_col].astype(str),
            "label": labels.astype(str),
            "license": [_text_or_none(v) for v in frame[license_col]] if license_col else None,
            "metadata": [
                json.dumps(
                    {c: _jsonable(v) for c, v in zip(extra, values, strict=True)}, ensure_ascii=False, sort_keys=True
                )
                for values in frame[extra].itertuples(index=False, name=None)
            ]
            if extra
            else "{}",
        }
    ).reset_index(drop=True)
    return UrlSelection(rows, seen, passed, dict(matched), dict(Counter(rows["label"])), refused)


def _text_or_none(value) -> str | None:
    value = _jsonable(value)
    return None if value is None or value == "" else str(value)
