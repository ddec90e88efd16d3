"""The measurements of an evaluation's plan as tasks of :mod:`dataigm.distribute` (a partition, or Ray).

A task is one unit of the plan by name (an aspect of a concept and model, or a model's efficiency). Its worker
builds a :class:`detectors.evaluation.flow.Runner` once per process (the judge and backbones stay loaded across
the units it runs), computes the unit into the content-keyed cache and hands the result back. The driver assembles
the report from the results by name (:func:`detectors.evaluation.flow.assemble`), so the order in which tasks end
changes nothing. A unit is one task: its judgements or features are one pass over that concept's and model's
images, whose cost is the judge's or backbone's forward passes; splitting a unit by shard would need a merge of
partial statistics for every aspect (FID's features, CSDR's pairs) for no gain at the sizes of a benchmark.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from dataigm.shardjob import one_line
from dataigm.shardwork import NamedTask, ShardResult, TaskName

logger = logging.getLogger(__name__)


@dataclass
class UnitWorker:
    """Measures one unit of ``plan`` per task; picklable (Ray ships it). ``load(plan)`` builds the runner on first
    use (:meth:`detectors.evaluation.flow.Runner.load`, given by the flow, which imports this module); a local run
    hands its own runner."""

    plan: object
    load: Callable
    _runner: object = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {"plan": self.plan, "load": self.load, "_runner": None}  # a loaded judge stays where it was loaded

    def run(self, task: NamedTask) -> ShardResult:
        """The unit's result in ``value``; a failure is returned with its one-line error, not raised."""
        name = task.shard.relpath
        try:
            if self._runner is None:
                self._runner = self.load(self.plan)
            value = self._runner.unit(name)
        except Exception as err:  # any failure of a unit: retried by the driver, then named
            return ShardResult(name, error=one_line(err), attempts=1)
        return ShardResult(name, images=1, attempts=1, value=value)


def measure(worker: UnitWorker, names: list[str], distributor, retries: int) -> dict[str, dict]:
    """Measure the units ``names`` of the worker's plan with ``distributor`` (its share of them for a partition);
    returns their results by name.

    Raises:
        ValueError: a unit that failed on every attempt, named with its error (the others are cached).
    """
    todo = [NamedTask(TaskName(n)) for n in distributor.select(names)]  # a task per unit of the plan
    results, failed = {}, {}
    for attempt in range(retries + 1):
        failed = {}
        for result in distributor.run(worker, todo) if todo else []:
            if result.error is None:
                results[result.shard] = result.value
            else:
                failed[result.shard] = result.error
                logger.warning("measurement %s failed (attempt %d of %d): %s", result.shard, attempt + 1,
                               retries + 1, result.error)  # fmt: skip
        todo = [t for t in todo if t.shard.relpath in failed]
        if not todo:
            break
    if failed:
        name, error = next(iter(failed.items()))
        more = f" (and {len(failed) - 1} other measurement(s))" if len(failed) > 1 else ""
        raise ValueError(
            f"measurement {name} failed {retries + 1} time(s){more}: {error}; the other results are cached, "
            "run the same command again to retry"
        )
    return results
