"""The decisions file: what a person decided about each queued image, one JSON line per decision.

The first line says which dataset and which queue the decisions are about (the dataset's name and the sha256
of its manifest, the queue's sha256). Every later line is one decision (``keep``, ``flip`` or ``skip``) with
the image's key, shard, image sha256 and the label it had; it is appended and synced to disk at once, so a
closed browser or a killed server loses nothing. A later decision on the same image replaces an earlier one.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..files import sha256_file
from ..layout import MANIFEST_NAME
from ..manifest import read_manifest
from ..schema import LABELS

DECISIONS_FORMAT = "dataigm-label-decisions/1"
CHOICES = ("keep", "flip", "skip")


def dataset_identity(root: str | Path) -> dict:
    """What identifies a dataset at one moment: its name and the sha256 of its manifest."""
    return {"name": read_manifest(root)["name"], "manifest_sha256": sha256_file(Path(root) / MANIFEST_NAME)}


@dataclass
class Decisions:
    """A decisions file read back: its header and the last decision per image (``shard#key``), in file order."""

    header: dict
    latest: dict[str, dict]

    @property
    def dataset(self) -> dict:
        return self.header["dataset"]


def _complete_lines(path: Path) -> tuple[list[str], int]:
    """The complete lines of ``path`` and the byte length they take (a line cut by a kill has no newline)."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    return data[:end].decode("utf-8").splitlines(), end


def read_decisions(path: str | Path) -> Decisions:
    """Read a decisions file; a last line cut short by a kill is ignored.

    Raises:
        ValueError: the file is missing, is not a decisions file, or holds a line that is not a decision.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--decisions {path}: no such file (dataigm review writes it)")
    lines, _ = _complete_lines(path)
    try:
        header = json.loads(lines[0]) if lines else None
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != DECISIONS_FORMAT:
        raise ValueError(
            f"{path} is not a decisions file of dataigm review (its first line is not a {DECISIONS_FORMAT} header)"
        )
    latest: dict[str, dict] = {}
    for number, line in enumerate(lines[1:], 2):
        try:
            decision = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {number}: not JSON ({err.msg})") from None
        if decision.get("decision") not in CHOICES or not decision.get("key") or not decision.get("shard"):
            raise ValueError(f"{path}, line {number}: not a decision (key, shard and one of {', '.join(CHOICES)})")
        uid = f"{decision['shard']}#{decision['key']}"
        latest.pop(uid, None)  # the last decision counts, in the order it was made
        latest[uid] = decision
    return Decisions(header, latest)


class DecisionLog:
    """Appends decisions to a decisions file, each synced to disk before :meth:`append` returns.

    Opening an existing file checks that it is about the same dataset and queue (another one is refused)
    and drops a last line a kill cut short; a new file gets its header first.
    """

    def __init__(self, path: str | Path, root: str | Path, queue_path: str | Path):
        from .queue import queue_sha256

        self.path = Path(path)
        self.root = Path(root)
        identity = dataset_identity(root)
        queue = {"path": str(queue_path), "sha256": queue_sha256(queue_path)}
        self._lock = threading.Lock()
        if self.path.is_file() and self.path.stat().st_size:
            existing = read_decisions(self.path)
            check_same_dataset(existing, identity, self.path, root)
            if existing.header.get("queue", {}).get("sha256") != queue["sha256"]:
                raise ValueError(
                    f"--decisions {self.path} answers another queue (sha256 {existing.header['queue']['sha256'][:12]}, "
                    f"this one {queue['sha256'][:12]}); give a new --decisions file for this queue"
                )
            _, end = _complete_lines(self.path)
            if end != self.path.stat().st_size:
                with open(self.path, "r+b") as f:  # a line cut by a kill: drop it, the decision was not confirmed
                    f.truncate(end)
            self.decisions = existing
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            header = {"format": DECISIONS_FORMAT, "dataset": identity, "queue": queue, "root": str(self.root)}
            self._write(header)
            self.decisions = Decisions(header, {})

    def _write(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def append(self, item, decision: str) -> dict:
        """Record ``decision`` on a queue item (:class:`~dataigm.review.queue.QueueItem`); returns the line written.

        Raises:
            ValueError: ``decision`` is not one of :data:`CHOICES`.
        """
        if decision not in CHOICES:
            raise ValueError(f"Decision {decision!r}; valid decisions: {', '.join(CHOICES)}")
        line = {
            "index": item.index,
            "key": item.key,
            "shard": item.shard,
            "sha256": item.record["sha256"],
            "concept": item.record["concept"],
            "source": item.record["source"],
            "method": item.record.get("method"),
            "label": LABELS[item.cls],
            "decision": decision,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        with self._lock:
            self._write(line)
            self.decisions.latest.pop(item.uid, None)
            self.decisions.latest[item.uid] = line
        return line


def check_same_dataset(decisions: Decisions, identity: dict, path: str | Path, root: str | Path) -> None:
    """Refuse decisions made on another dataset, or on this one before it changed.

    Raises:
        ValueError: naming both identities and what to do.
    """
    theirs = decisions.dataset
    if theirs.get("name") != identity["name"] or theirs.get("manifest_sha256") != identity["manifest_sha256"]:
        raise ValueError(
            f"{path} holds decisions for dataset {theirs.get('name')!r} at manifest sha256 "
            f"{str(theirs.get('manifest_sha256'))[:12]}, but {root} is {identity['name']!r} at "
            f"{identity['manifest_sha256'][:12]} (another dataset, or it changed since the review); nothing was written"
        )
