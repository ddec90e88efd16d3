"""Generation's writer thread: shard k is written while shard k + 1 renders, to the same bytes, with the same errors."""

from __future__ import annotations

import errno
import threading
import time
from dataclasses import dataclass

import pytest

import generation.mapper
import generation.runner
from generation.config import JobConfig
from generation.runner import prepare, run_job

SMALL = dict(steps=2, height=64, width=64, samples_per_shard=2, progress=False, concepts=["church"])


def job(root, pipeline, **changes) -> JobConfig:
    options = dict(SMALL, kinds=["forget", "replace"], max_prompts=3, models=[str(pipeline)]) | changes
    return JobConfig(out=str(root), **options)


def tars(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / "data").rglob("*.tar"))}


@dataclass(frozen=True)
class OneAtATime:
    """A distributor that hands the worker one task at a time (what Ray does): no writer thread."""

    shares_reservation = False

    def select(self, tasks):
        return list(tasks)

    def run(self, worker, tasks):
        for task in tasks:
            yield worker.run(task)


@pytest.fixture
def timeline(monkeypatch):
    """(event, shard, thread name, time) of every render and write, from the real functions."""
    events = []
    render, write = generation.mapper.render_shard, generation.runner.write_shard  # rendering, then writing

    def timed_render(task, *args, **kwargs):
        events.append(("render_start", task.shard.relpath, threading.current_thread().name, time.perf_counter()))
        out = render(task, *args, **kwargs)
        events.append(("render_end", task.shard.relpath, threading.current_thread().name, time.perf_counter()))
        return out

    def timed_write(root, shard, samples, **kwargs):
        events.append(("write_start", shard.relpath, threading.current_thread().name, time.perf_counter()))
        out = write(root, shard, samples, **kwargs)
        events.append(("write_end", shard.relpath, threading.current_thread().name, time.perf_counter()))
        return out

    monkeypatch.setattr(generation.mapper, "render_shard", timed_render)
    monkeypatch.setattr(generation.runner, "write_shard", timed_write)
    return events


def _at(events, name, shard):
    return next(t for e, s, _, t in events if e == name and s == shard)


def test_the_writer_thread_overlaps_rendering_and_writes_the_same_bytes(tiny_pipeline_dir, tmp_path, timeline):
    summary = run_job(job(tmp_path / "threaded", tiny_pipeline_dir))
    threaded = list(timeline)
    timeline.clear()
    serial = prepare(job(tmp_path / "serial", tiny_pipeline_dir)).run(OneAtATime())
    assert summary.complete and summary.images == serial.images == 6 and summary.written == serial.written == 3
    assert tars(tmp_path / "threaded") == tars(tmp_path / "serial")  # byte-identical shards
    shards = [s for e, s, _, _ in threaded if e == "render_start"]
    assert len(shards) == 3 and {t for e, _, t, _ in threaded if e == "write_start"} == {"dataigm-shard-writer_0"}
    for shard, following in zip(shards, shards[1:], strict=False):
        # shard k's write began before shard k + 1 finished rendering: the model never waited for it
        assert _at(threaded, "write_start", shard) < _at(threaded, "render_end", following)
        assert _at(timeline, "write_end", shard) <= _at(timeline, "render_start", following)  # one at a time
    assert {t for e, _, t, _ in timeline if e == "write_start"} == {"MainThread"}


def test_the_next_shard_renders_while_the_last_encodes_of_this_one_run(
    tiny_pipeline_dir, tmp_path, timeline, monkeypatch
):
    sample, shard_of, encoded = generation.mapper._sample, {}, {}

    def slow_sample(item, *args):  # a slow PNG encoder: the model must not wait for it
        time.sleep(0.5)
        out = sample(item, *args)
        encoded.setdefault(shard_of[id(item)], []).append(time.perf_counter())
        return out

    render = generation.mapper.render_shard

    def recording_render(task, *args):
        shard_of.update(dict.fromkeys(map(id, task.items), task.shard.relpath))
        return render(task, *args)

    monkeypatch.setattr(generation.mapper, "_sample", slow_sample)
    monkeypatch.setattr(generation.mapper, "render_shard", recording_render)
    summary = run_job(job(tmp_path / "pooled", tiny_pipeline_dir))
    shards = [s for e, s, _, _ in timeline if e == "render_start"]
    assert summary.complete and len(shards) == 3
    for shard, following in zip(shards, shards[1:], strict=False):
        assert _at(timeline, "render_start", following) < max(encoded[shard])  # began before shard's encodes ended
        assert max(encoded[shard]) <= _at(timeline, "write_start", shard)
    monkeypatch.setattr(generation.mapper, "_sample", sample)
    serial = prepare(job(tmp_path / "serial", tiny_pipeline_dir)).run(OneAtATime())
    assert serial.images == summary.images == 6 and tars(tmp_path / "pooled") == tars(tmp_path / "serial")


def test_a_failed_write_is_that_shards_result_and_transient_ones_are_retried(tiny_pipeline_dir, tmp_path, monkeypatch):
    write = generation.runner.write_shard
    calls: dict[str, int] = {}
    order = []

    def flaky_write(root, shard, samples, **kwargs):
        calls[shard.relpath] = calls.get(shard.relpath, 0) + 1
        order.append(shard.relpath)
        if len(calls) == 1 and calls[shard.relpath] == 1:
            raise OSError(errno.EIO, "I/O error")  # transient: retried from the samples in memory
        if len(calls) == 2:
            raise ValueError("the disk refuses this shard")  # deterministic: the shard fails
        return write(root, shard, samples, **kwargs)

    monkeypatch.setattr(generation.runner, "write_shard", flaky_write)
    summary = run_job(job(tmp_path / "r", tiny_pipeline_dir, retries=1))
    first, second, third = dict.fromkeys(order)
    assert calls == {first: 2, second: 1, third: 1}
    assert summary.written == 2 and summary.images == 4 and [r.shard for r in summary.failed] == [second]
    assert "ValueError: the disk refuses this shard" in summary.failed[0].error and not summary.failed[0].retryable
    assert set(tars(tmp_path / "r")) == {first, third}


def test_png_level_is_recorded_with_the_job_and_keeps_every_pixel(tiny_pipeline_dir, tmp_path):
    import io
    import json

    import numpy as np
    from PIL import Image

    from dataigm import iter_samples
    from generation.mapper import encode_png

    image = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray((image * 255).round().astype(np.uint8)).save(buffer, format="PNG")
    assert encode_png(image) == buffer.getvalue()  # the default level is Pillow's: the same bytes as before

    fast, default = tmp_path / "fast", tmp_path / "default"
    run_job(job(fast, tiny_pipeline_dir, png_compress_level=0))
    run_job(job(default, tiny_pipeline_dir))

    def decoded(root):
        return {s.key: np.asarray(Image.open(io.BytesIO(s.image))) for s in iter_samples(root)}

    a, b = decoded(fast), decoded(default)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)  # the same pixels
    assert sum(map(len, tars(fast).values())) > sum(map(len, tars(default).values()))  # stored uncompressed
    manifest = json.loads((fast / "dataigm.json").read_text())
    (config,) = [j["config"] for j in manifest["jobs"].values()]
    assert config["png_compress_level"] == 0
    again = run_job(job(fast, tiny_pipeline_dir, png_compress_level=9))  # the same work: nothing to redo
    assert (again.written, again.skipped) == (0, 3)
    with pytest.raises(ValueError, match="png_compress_level must be 0 .* to 9 .*, got 10"):
        job(fast, tiny_pipeline_dir, png_compress_level=10)
