"""What a shard job and its distributors share: the per-shard worker protocol and a shard's result.

:mod:`dataigm.shardjob` plans, reserves and collects; :mod:`dataigm.distribute` decides who runs each task.
Both speak of a worker and its results, defined here so that neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass
class ShardResult:
    """What one shard task came to: written (``images``, ``flags``, ``skipped`` inputs) or failed (``error``)."""

    shard: str
    images: int = 0
    flags: dict[str, int] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)  # inputs left out of the shard, as {"file", "reason"}
    error: str | None = None
    attempts: int = 0
    retryable: bool = True  # False: the error is deterministic (bad input), a re-run repeats it
    value: Any = None  # a small result a task hands back to the driver (an evaluation unit's numbers)


@dataclass(frozen=True)
class TaskName:
    """The name of a task that writes no shard (an attack's batch of prompts, an evaluation's measurement), where the
    distributors read a task's ``shard.relpath``."""

    relpath: str


@dataclass(frozen=True)
class NamedTask:
    """A task that is its name alone (the worker knows the rest)."""

    shard: TaskName


@runtime_checkable
class ShardWorker(Protocol):
    """Turns one planned task into one written shard; picklable, so that Ray can ship it to its workers.

    A task is any dataclass with a ``shard`` field (a :class:`~dataigm.layout.ShardId` numbered from 0 in its
    group; the job moves it to the range it reserved). ``run`` writes the shard with
    :func:`dataigm.writer.write_shard` and returns its result; a failure is returned, not raised
    (:func:`dataigm.shardjob.with_retries` does both).
    """

    def run(self, task: Any) -> ShardResult: ...


# A worker may also offer ``run_many(tasks) -> Iterator[ShardResult]`` (one result per task, in order, each as
# ``run`` would give it): a local run hands it the whole list, so it can overlap one shard's writing with the
# next one's work (generation's writer thread).
