"""Near-duplicate search: the banded search of ``dataigm.duplicates.near_pairs`` against comparing every pair.

N random 64-bit hashes (fixed seed), plus one planted neighbour (1..D flipped bits) for every 50th hash, are
searched for pairs at Hamming distance <= D two ways:

* ``banded``: :func:`dataigm.duplicates.near_pairs` (the hash cut into D + 1 bands; only hashes equal on a band
  are compared);
* ``all-pairs``: every pair, in numpy blocks of 2048 rows (``bitwise_count`` of the XOR), the obvious method.

Both must find the same pairs (checked on every run, and the planted ones must all be found). Each method gets
R timed runs on the same hashes, one after the other in one process (the machine's state: whatever else runs
on it, printed with the load average); the table reports the median seconds and the all-pairs / banded ratio.
``all-pairs`` is skipped above ``--max-all-pairs`` (it grows with N squared). Decoding and hashing the images
is not timed here (it is cached per shard by ``dataigm validate``).

Run from the repository root::

    python benchmarks/duplicates.py --n 2000 20000 100000 500000 --runs 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from dataigm.duplicates import _popcount, near_pairs


def all_pairs(values: np.ndarray, distance: int, block: int = 2048) -> set[tuple[int, int]]:
    found: set[tuple[int, int]] = set()
    for row in range(0, len(values), block):
        dist = _popcount(values[row : row + block, None] ^ values[None, :])
        i, j = np.nonzero(dist <= distance)
        i = i + row
        keep = i < j
        found.update(zip(i[keep].tolist(), j[keep].tolist(), strict=True))
    return found


def make_hashes(n: int, distance: int, seed: int = 0) -> tuple[np.ndarray, set[tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64)
    planted = set()
    for i in range(0, n - 1, 50):
        flips = rng.choice(64, size=int(rng.integers(1, distance + 1)), replace=False)
        values[i + 1] = values[i] ^ np.uint64(sum(1 << int(b) for b in flips))
        planted.add((i, i + 1))
    return values, planted


def timed(function, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[2000, 20000, 100000], help="numbers of hashes")
    parser.add_argument("--distance", type=int, default=4, help="largest Hamming distance (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per method (default: %(default)s)")
    parser.add_argument("--max-all-pairs", type=int, default=40000, help="largest N for all-pairs")
    args = parser.parse_args(argv)
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {load[0]:.1f}")
    print(f"distance <= {args.distance}, median of {args.runs} run(s)")
    print(f"{'N':>9}  {'pairs':>7}  {'banded s':>9}  {'all-pairs s':>11}  {'ratio':>6}")
    for n in args.n:
        values, planted = make_hashes(n, args.distance)
        banded_s, banded = timed(lambda v=values: near_pairs(v.tolist(), args.distance), args.runs)
        assert planted <= banded, "the banded search missed a planted neighbour"
        if n <= args.max_all_pairs:
            brute_s, brute = timed(lambda v=values: all_pairs(v, args.distance), args.runs)
            assert brute == banded, "the two methods disagree"
            print(f"{n:>9}  {len(banded):>7}  {banded_s:>9.3f}  {brute_s:>11.3f}  {brute_s / banded_s:>6.1f}")
        else:
            print(f"{n:>9}  {len(banded):>7}  {banded_s:>9.3f}  {'skipped':>11}  {'':>6}")


if __name__ == "__main__":
    main()
