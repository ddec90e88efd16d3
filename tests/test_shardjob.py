"""The shared shard job with a trivial real worker (solid-colour PNGs): resume, skip, partitions, bytes, re-plans."""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers.data import image_bytes

from dataigm import ShardId, iter_samples, load_registry, read_manifest, write_shard
from dataigm.distribute import LocalDistributor, RayDistributor, make_distributor
from dataigm.sample import Sample
from dataigm.shardjob import ShardJob, with_retries
from dataigm.shardwork import ShardResult, ShardWorker
from dataigm.validate import validate_root


@dataclass(frozen=True)
class ColourTask:
    shard: ShardId
    items: tuple[int, ...]  # one solid image per colour value


@dataclass
class ColourWorker:
    """Writes one solid-colour PNG per item; ``broken`` shards fail for good, ``flaky`` ones fail once (EIO)."""

    root: str
    job: str
    broken: set[int] = field(default_factory=set)
    flaky: set[int] = field(default_factory=set)
    retries: int = 2

    def run(self, task: ColourTask) -> ShardResult:
        def attempt() -> ShardResult:
            if task.items[0] in self.broken:
                raise ValueError(f"colour {task.items[0]} cannot be drawn")
            if task.items[0] in self.flaky:
                self.flaky.discard(task.items[0])
                raise OSError(errno.EIO, "Input/output error")
            samples = [_sample(task.shard, value) for value in task.items]
            write_shard(self.root, task.shard, samples, job_id=self.job)
            return ShardResult(task.shard.relpath, images=len(samples))

        return with_retries(task.shard, attempt, self.retries)


def _sample(shard: ShardId, value: int) -> Sample:
    record = {"concept": "church", "label": "target", "category": "local/concrete/entity", "source": shard.source}
    record |= {"split": shard.split, "height": 12, "width": 16, "origin": f"colour-{value}", "label_source": "folder"}
    return Sample(f"colour-{value:03d}", image_bytes((value, 255 - value, 7)), "png", 1, record)


def colour_job(root: Path, per_shard: int = 2, n: int = 7, job_id: str = "colours-0123456789abcdef", **worker):
    values = list(range(0, 10 * n, 10))
    tasks = [
        ColourTask(ShardId("church", "train", "real", k), tuple(values[i : i + per_shard]))
        for k, i in enumerate(range(0, n, per_shard))
    ]
    return ShardJob(
        root=root,
        job_id=job_id,
        tasks=tasks,
        worker=ColourWorker(str(root), job_id, **worker),
        concepts=[load_registry().get("church")],
        plan={"samples_per_shard": per_shard},
        description="colours",
    )


def tars(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / "data").rglob("*.tar"))}


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


LOCAL = LocalDistributor()


def test_the_worker_is_a_shard_worker_and_picklable(tmp_path):
    import pickle

    worker = colour_job(tmp_path / "r").worker
    assert isinstance(worker, ShardWorker) and pickle.loads(pickle.dumps(worker)) == worker


def test_a_job_writes_each_shard_once_then_skips_done_shards(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    summary = colour_job(a).run(LOCAL)
    assert (summary.written, summary.skipped, summary.images, summary.complete) == (4, 0, 7, True)
    colour_job(b).run(LOCAL)
    assert tars(a) == tars(b) and len(tars(a)) == 4  # the same job writes byte-identical shards
    again = colour_job(a).run(LOCAL)
    assert (again.written, again.skipped, again.images) == (0, 4, 0) and tars(a) == tars(b)
    assert len(list(iter_samples(a))) == 7 and validate_root(a) == [] and (a / "README.md").exists()


def test_a_failed_shard_is_reported_and_a_re_run_finishes_to_the_same_bytes(tmp_path):
    colour_job(tmp_path / "clean").run(LOCAL)
    root = tmp_path / "r"
    summary = colour_job(root, broken={40}).run(LOCAL)
    assert summary.written == 3 and [r.shard for r in summary.failed] == ["data/church/train/real-00002.tar"]
    (failed,) = summary.failed
    assert failed.attempts == 1 and not failed.retryable and "colour 40 cannot be drawn" in failed.error
    assert "the errors above repeat on every run" in summary.text()
    resumed = colour_job(root).run(LOCAL)
    assert (resumed.written, resumed.skipped) == (1, 3)
    assert tars(root) == tars(tmp_path / "clean") and validate_root(root) == []


def test_only_transient_errors_are_retried(tmp_path):
    summary = colour_job(tmp_path / "r", flaky={0, 20}).run(LOCAL)
    assert summary.complete and summary.written == 4
    # a deterministic error fails at once; a transient one that persists uses every retry
    summary = colour_job(tmp_path / "s", broken={0}, retries=3).run(LOCAL)
    assert summary.failed[0].attempts == 1
    job = colour_job(tmp_path / "t")
    attempts = []

    def always_eio():
        attempts.append(1)
        raise OSError(errno.EIO, "Input/output error")

    result = with_retries(job.tasks[0].shard, always_eio, retries=2)
    assert len(attempts) == 3 and result.attempts == 3 and result.retryable and "Input/output error" in result.error


def test_partitions_together_equal_one_process(tmp_path):
    colour_job(tmp_path / "single").run(LOCAL)
    written = 0
    for index in range(3):
        written += colour_job(tmp_path / "parts").run(make_distributor("local", 3, index)).written
    assert written == 4 and tars(tmp_path / "parts") == tars(tmp_path / "single")
    assert validate_root(tmp_path / "parts") == []


def test_a_re_plan_with_another_shard_size_is_refused_naming_the_option(tmp_path):
    root = tmp_path / "r"
    colour_job(root, per_shard=2).run(LOCAL)
    before = tree(root)
    with pytest.raises(ValueError, match="--samples-per-shard was 2, now 3") as err:
        colour_job(root, per_shard=3).run(LOCAL)
    assert "--samples-per-shard 2" in str(err.value)
    assert tree(root) == before  # refused before anything was written


def test_a_new_job_that_wrote_nothing_leaves_no_root(tmp_path):
    root = tmp_path / "r"
    with pytest.raises(ValueError, match=r"cannot be drawn \(and 3 other shard\(s\)\); nothing was written"):
        colour_job(root, broken={0, 20, 40, 60}).run(LOCAL)
    assert not root.exists()


def test_a_new_job_that_wrote_nothing_leaves_an_existing_root_as_it_was(tmp_path):
    root = tmp_path / "r"
    colour_job(root, job_id="colours-first").run(LOCAL)
    before = tree(root)
    with pytest.raises(ValueError, match="nothing was written"):
        colour_job(root, job_id="colours-second", broken={0, 20, 40, 60}).run(LOCAL)
    assert tree(root) == before and list(read_manifest(root)["jobs"]) == ["colours-first"]


def test_a_partition_that_wrote_nothing_keeps_the_shared_reservation(tmp_path):
    root = tmp_path / "r"
    summary = colour_job(root, broken={0, 40}).run(make_distributor("local", 2, 0))
    assert len(summary.failed) == 2 and not summary.rolled_back
    assert "colours-0123456789abcdef" in read_manifest(root)["jobs"]  # worker 1 may be writing its shards


def test_distributors_are_named(tmp_path):
    assert isinstance(make_distributor("ray", num_gpus=0.5), RayDistributor)
    with pytest.raises(ValueError, match="Unknown distributor 'spark'; valid: local, ray"):
        make_distributor("spark")
    with pytest.raises(ValueError, match="worker_index 2 is outside 0..1"):
        make_distributor("local", 2, 2)
