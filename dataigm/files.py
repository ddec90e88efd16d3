"""Small file helpers: output checks, atomic writes and the sha256 primitives (the identity of files, folders and
model weights, with its digest cache, is :mod:`dataigm.identity`'s)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path


def check_output(path: str | os.PathLike, kind: str = "folder", option: str = "--out") -> None:
    """Refuse, before anything is written, an output path that cannot be created or written.

    Args:
        path: the output.
        kind: ``"folder"`` or ``"file"``, what ``path`` must be (or become).
        option: the option that named it, for the message.

    Raises:
        ValueError: ``path`` is the other kind, lies below a file, or its nearest existing folder is not
            writable (read-only file system, no permission).
    """
    path = Path(path)
    if path.exists() and path.is_dir() != (kind == "folder"):
        what = "a file" if kind == "folder" else "a folder"
        raise ValueError(f"{option} {str(path)!r} is {what}; give a {kind} path")
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise ValueError(f"{option} {str(path)!r} cannot be created: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(
            f"{option} {str(path)!r} cannot be written: {str(existing)!r} is not writable "
            "(read-only file system or no permission)"
        )


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it over ``path``.

    A reader (or a resumed job) never sees a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data: object) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
