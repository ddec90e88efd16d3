"""Ray distributor: one Ray task per shard, ``num_gpus`` each (install with ``pip install dataigm[distributed]``).

Ray's worker processes live across tasks, so a worker that runs several shards of one model loads
its pipeline once (see ``runner.get_model``).
"""

from __future__ import annotations

from collections.abc import Iterator

from .job import JobConfig, ShardTask
from .runner import ShardResult, run_shard


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError("the ray distributor needs Ray: pip install 'dataigm[distributed]'") from None
    return ray


def run_with_ray(cfg: JobConfig, tasks: list[ShardTask], job: str) -> Iterator[ShardResult]:
    """Yield each shard's result as its task finishes."""
    ray = _import_ray()
    if not ray.is_initialized():
        ray.init(address=cfg.ray_address, include_dashboard=False, log_to_driver=False)
    import torch

    gpus = cfg.num_gpus if cfg.num_gpus is not None else (1 if torch.cuda.is_available() else 0)
    remote = ray.remote(num_gpus=gpus, max_retries=0)(run_shard)
    shard_of = {remote.remote(cfg, task, job): task.shard.relpath for task in tasks}
    pending = list(shard_of)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        try:
            yield ray.get(ready[0])
        except ray.exceptions.RayError as err:  # the worker process died (killed, out of host memory)
            yield ShardResult(shard_of[ready[0]], error=f"Ray task failed: {err}", attempts=1)
