"""Distributors: who runs a job's shard tasks, given the per-shard worker as a callable (img2dataset's shape).

* ``local``: this process runs the tasks in order; with ``num_workers``/``worker_index`` (or torchrun's
  ``WORLD_SIZE``/``RANK``, or a SLURM array) it runs only its partition, every ``num_workers``-th task,
  and the union of the partitions is the single-process result.
* ``ray``: one Ray task per shard, ``num_gpus`` each, on an existing cluster or a local one.

A distributor knows nothing of what a shard holds: it selects its tasks and yields one
:class:`~dataigm.shardwork.ShardResult` per task as it finishes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .shardwork import ShardResult, ShardWorker

DISTRIBUTORS = ("local", "ray")


def worker_partition(num_workers: int | None, worker_index: int | None) -> tuple[int, int]:
    """``(num_workers, worker_index)`` from the arguments, else torchrun or a SLURM array, else ``(1, 0)``."""
    env = os.environ
    if num_workers is None and worker_index is None:
        if "WORLD_SIZE" in env and "RANK" in env:
            num_workers, worker_index = int(env["WORLD_SIZE"]), int(env["RANK"])
        elif "SLURM_ARRAY_TASK_COUNT" in env and "SLURM_ARRAY_TASK_ID" in env:
            first = int(env.get("SLURM_ARRAY_TASK_MIN", 0))
            num_workers = int(env["SLURM_ARRAY_TASK_COUNT"])
            worker_index = int(env["SLURM_ARRAY_TASK_ID"]) - first
    num_workers, worker_index = num_workers or 1, worker_index or 0
    if not 0 <= worker_index < num_workers:
        raise ValueError(f"worker_index {worker_index} is outside 0..{num_workers - 1} (num_workers={num_workers})")
    return num_workers, worker_index


@dataclass(frozen=True)
class LocalDistributor:
    """Runs this process's tasks in order: all of them, or partition ``worker_index`` of ``num_workers``."""

    num_workers: int = 1
    worker_index: int = 0

    @property
    def shares_reservation(self) -> bool:
        """Whether other processes write shards of the same reservation (then a failed run cannot undo it)."""
        return self.num_workers > 1

    def select(self, tasks: Sequence[Any]) -> list[Any]:
        """The tasks of this worker's partition."""
        return [t for i, t in enumerate(tasks) if i % self.num_workers == self.worker_index]

    def run(self, worker: ShardWorker, tasks: Sequence[Any]) -> Iterator[ShardResult]:
        """Yield each task's result, in order."""
        for task in tasks:
            yield worker.run(task)


def _run_task(worker: ShardWorker, task: Any) -> ShardResult:
    return worker.run(task)


@dataclass(frozen=True)
class RayDistributor:
    """One Ray task per shard with ``num_gpus`` GPUs each (``pip install 'dataigm[distributed]'``).

    Ray's worker processes live across tasks, so a worker that keeps state in its module (a loaded model)
    keeps it across the shards it runs.
    """

    address: str | None = None
    num_gpus: float = 0

    shares_reservation = False

    def select(self, tasks: Sequence[Any]) -> list[Any]:
        """Every task: Ray spreads them over the cluster."""
        return list(tasks)

    def run(self, worker: ShardWorker, tasks: Sequence[Any]) -> Iterator[ShardResult]:
        """Yield each task's result as it finishes; a task whose process died is a failed shard."""
        try:
            import ray
        except ImportError:
            raise ValueError("the ray distributor needs Ray: pip install 'dataigm[distributed]'") from None
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        remote = ray.remote(num_gpus=self.num_gpus, max_retries=0)(_run_task)
        worker_ref = ray.put(worker)
        shard_of = {remote.remote(worker_ref, task): task.shard.relpath for task in tasks}
        pending = list(shard_of)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                yield ray.get(ready[0])
            except ray.exceptions.RayError as err:  # the worker process died (killed, out of host memory)
                yield ShardResult(shard_of[ready[0]], error=f"Ray task failed: {err}", attempts=1)


def make_distributor(
    name: str = "local",
    num_workers: int | None = None,
    worker_index: int | None = None,
    ray_address: str | None = None,
    num_gpus: float = 0,
) -> LocalDistributor | RayDistributor:
    """The distributor called ``name`` (one of :data:`DISTRIBUTORS`).

    Raises:
        ValueError: an unknown name (with the valid ones) or a worker index outside the partition.
    """
    if name == "local":
        return LocalDistributor(*worker_partition(num_workers, worker_index))
    if name == "ray":
        return RayDistributor(ray_address, num_gpus)
    raise ValueError(f"Unknown distributor {name!r}; valid: {', '.join(DISTRIBUTORS)}")
