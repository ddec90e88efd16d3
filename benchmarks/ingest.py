"""Ingest throughput: URL lists through img2dataset into dataigm shards, and a streamed Hub dataset.

URL lists. N random RGB PNG images (S x S, fixed seed) are served by a loopback HTTP server (the tests'
``tests/helpers/web.py``, on 127.0.0.1) and listed in one parquet URL list, half with church captions, half with cat
captions. For each number of download processes P (default 2 and 8), two ways are timed side by side:

* ``img2dataset``: the img2dataset command alone on the list, writing its own WebDataset (``output_format
  webdataset``, no resize, no re-encoding, T threads per process);
* ``dataigm``: ``dataigm.sources.ingest_urls`` on the same list into a fresh root: selection by caption, the same
  img2dataset run, then the decode check, records and our shards.

The ratio ``dataigm / img2dataset`` of wall-clock times is the overhead of our labels and records. Both start
img2dataset once per run (its interpreter and worker start-up are in both times).

Hub dataset. The same images in a local parquet dataset (``image``, ``label`` ClassLabel) are timed two ways:
``datasets`` streaming alone (every row read, image bytes not decoded) and ``ingest_hf_dataset`` (the streamed
selection pass, the streamed image pass, decode check, our shards). The ratio is again ours over the library's.

Each way is run R times, the ways alternating within each repetition (A B A B ...), every run on a fresh output
folder; the table gives the median images/s and the ratio of the medians. Every run is checked to produce N
images. Run from the repository root::

    python benchmarks/ingest.py --n 2000
    python benchmarks/ingest.py --n 2000 --processes 2 8 --runs 3 --json ingest.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the loopback image server of the tests


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="number of images (default: %(default)s)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default: %(default)s)")
    parser.add_argument("--processes", type=int, nargs="+", default=[2, 8], help="download processes to compare")
    parser.add_argument("--threads", type=int, default=16, help="download threads per process (default: %(default)s)")
    parser.add_argument("--samples-per-shard", type=int, default=250, help="rows per shard (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=2, help="runs per way (default: %(default)s)")
    parser.add_argument("--workdir", type=Path, help="keep the images and outputs here (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the raw timings to this JSON file")
    args = parser.parse_args(argv)
    for name in ("n", "size", "threads", "samples_per_shard", "runs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if min(args.processes) < 1:
        parser.error("--processes must be at least 1")
    return args


def make_images(n: int, size: int) -> list[bytes]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def time_img2dataset(urls: Path, out: Path, processes: int, threads: int, spp: int) -> tuple[float, int]:
    """img2dataset alone, writing its own WebDataset; returns (seconds, images written)."""
    from dataigm.sources import img2dataset as i2d

    command = i2d.find_img2dataset()
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}
    argv = [*command, f"--url_list={urls}", "--input_format=parquet", "--url_col=url", "--caption_col=caption"]
    argv += ["--output_format=webdataset", f"--output_folder={out}", f"--processes_count={processes}"]
    argv += [f"--thread_count={threads}", f"--number_sample_per_shard={spp}", "--resize_mode=no"]
    argv += ["--disable_all_reencoding=True", "--extract_exif=False", "--enable_wandb=False", "--timeout=10"]
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    stats = [json.loads(p.read_text()) for p in out.glob("*_stats.json")]
    return seconds, sum(s["successes"] for s in stats)


def time_dataigm_urls(urls: Path, root: Path, processes: int, threads: int, spp: int) -> tuple[float, int]:
    from dataigm.sources import ingest_urls

    start = time.perf_counter()
    report = ingest_urls(
        urls,
        root,
        "church",
        pair_words=["cat"],
        processes=processes,
        threads=threads,
        samples_per_shard=spp,
        progress=False,
        allow_private_addresses=True,  # the loopback server
    )
    seconds = time.perf_counter() - start
    return seconds, sum(report.counts["downloaded"].values())


def time_datasets_stream(folder: Path) -> tuple[float, int]:
    from datasets import Image, load_dataset

    start = time.perf_counter()
    stream = load_dataset(str(folder), split="train", streaming=True).cast_column("image", Image(decode=False))
    count = sum(1 for row in stream if row["image"]["bytes"])
    return time.perf_counter() - start, count


def time_dataigm_hub(folder: Path, root: Path, spp: int) -> tuple[float, int]:
    from dataigm.sources import ingest_hf_dataset

    start = time.perf_counter()
    report, _ = ingest_hf_dataset(
        str(folder), root, "church", class_names={"church": "target", "other": "pair"}, samples_per_shard=spp,
        progress=False,
    )  # fmt: skip
    return time.perf_counter() - start, report.samples


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dataigm-bench-ingest-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "HF_HOME": str(workdir / "cache" / "hf"),
            "HF_DATASETS_CACHE": str(workdir / "cache" / "datasets"),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        }
    )
    import datasets
    import pandas as pd
    from helpers.web import ImageServer

    images = make_images(args.n, args.size)
    hub = workdir / "hub"
    labels = [i % 2 for i in range(args.n)]
    datasets.Dataset.from_dict(
        {"image": [{"bytes": b, "path": None} for b in images], "label": labels},
        features=datasets.Features(
            {"image": datasets.Image(), "label": datasets.ClassLabel(names=["church", "other"])}
        ),
    ).to_parquet(str(hub / "data" / "train.parquet"))

    timings: dict[str, list[float]] = {}

    def record(way: str, seconds: float, count: int) -> None:
        if count != args.n:
            raise SystemExit(f"{way}: {count} images instead of {args.n}")
        timings.setdefault(way, []).append(args.n / seconds)
        print(f"  {way}: {seconds:.2f} s, {args.n / seconds:.1f} images/s", flush=True)

    with ImageServer() as server:
        rows = []
        for i, data in enumerate(images):
            server.images[f"{i}.png"] = data
            caption = f"a church, photo {i}" if i % 2 == 0 else f"a cat, photo {i}"
            rows.append({"url": server.url("img", f"{i}.png"), "caption": caption})
        urls = workdir / "urls.parquet"
        pd.DataFrame(rows).to_parquet(urls)
        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs}", flush=True)
            for p in args.processes:
                out = workdir / f"i2d-p{p}-r{run}"
                record(f"img2dataset P={p}", *time_img2dataset(urls, out, p, args.threads, args.samples_per_shard))
                shutil.rmtree(out)
                root = workdir / f"root-p{p}-r{run}"
                record(f"dataigm urls P={p}", *time_dataigm_urls(urls, root, p, args.threads, args.samples_per_shard))
                shutil.rmtree(root)
            record("datasets streaming", *time_datasets_stream(hub))
            root = workdir / f"root-hub-r{run}"
            record("dataigm hf-dataset", *time_dataigm_hub(hub, root, args.samples_per_shard))
            shutil.rmtree(root)

    medians = {way: statistics.median(v) for way, v in timings.items()}
    pairs = [(f"dataigm urls P={p}", f"img2dataset P={p}") for p in args.processes]
    pairs.append(("dataigm hf-dataset", "datasets streaming"))
    print(f"\n{args.n} images of {args.size}x{args.size} px, {args.runs} run(s) per way, {os.cpu_count()} CPUs")
    print(f"{'way':<22} {'images/s (median)':>18} {'time ratio ours/library':>24}")
    for ours, theirs in pairs:
        print(f"{theirs:<22} {medians[theirs]:>18.1f}")
        print(f"{ours:<22} {medians[ours]:>18.1f} {medians[theirs] / medians[ours]:>24.2f}")
    if args.json:
        meta = {"n": args.n, "size": args.size, "threads": args.threads, "runs": args.runs}
        meta |= {"cpus": os.cpu_count(), "machine": platform.platform(), "python": platform.python_version()}
        args.json.write_text(json.dumps({"config": meta, "images_per_second": timings}, indent=2))
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
