"""img2dataset as the downloader of URL lists, run as its own process (in its own environment).

img2dataset pins ``webdataset<0.3`` and ``pandas<3`` (and albumentations, opencv, wandb), which would downgrade
the project's environment, so it lives in an environment of its own and we only run its command line:
``make install`` creates ``.venv/img2dataset``; any other install is found through ``--img2dataset``, the
``DATAIGM_IMG2DATASET`` variable or ``PATH``. Its output is read with the standard library and pyarrow only.

img2dataset writes, per download shard ``NNNNN``: ``NNNNN.tar`` (the images that downloaded), ``NNNNN.parquet``
(every row with its ``status`` and ``error_message``) and, last, ``NNNNN_stats.json``: a shard with its stats
file is done, and ``incremental_mode="incremental"`` skips it on a re-run.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .config import SAMPLES_PER_SHARD

logger = logging.getLogger(__name__)

IMG2DATASET_ENV = "DATAIGM_IMG2DATASET"
ROW_COLUMN = "dataigm_row"  # our row number, passed through img2dataset to find each result's row
SHARD_DIGITS = 5  # img2dataset's oom_shard_count default: shard files are 00000.tar, 00000.parquet, ...
_PIDFILE = "img2dataset.pid"
_LOG = "img2dataset.log"


def find_img2dataset(command: str | None = None) -> list[str]:
    """The command that runs img2dataset.

    Looked up in order: ``command``; ``$DATAIGM_IMG2DATASET``; ``img2dataset`` on ``PATH``; the environment
    ``make install`` creates next to this interpreter's (``<venv>/img2dataset/bin/img2dataset``).

    Raises:
        ValueError: none found, saying how to install it.
    """
    for candidate in (command, os.environ.get(IMG2DATASET_ENV)):
        if candidate:
            found = shutil.which(candidate)
            if found is None:
                raise ValueError(f"img2dataset command {candidate!r} is not an executable file")
            return [found]
    on_path = shutil.which("img2dataset")
    if on_path is not None:
        return [on_path]
    beside = Path(sys.prefix) / "img2dataset" / "bin" / "img2dataset"
    if beside.exists():
        return [str(beside)]
    raise ValueError(
        "img2dataset is not installed. It pins webdataset<0.3 and pandas<3, so give it its own environment: "
        f"`make install` creates {beside.parent.parent}, or `python -m venv ENV && ENV/bin/pip install img2dataset` "
        f"and pass --img2dataset ENV/bin/img2dataset (or set {IMG2DATASET_ENV})"
    )


@dataclass(frozen=True)
class DownloadOptions:
    """How img2dataset fetches: processes and threads, per-URL timeout and retries, rows per download shard."""

    processes: int = 2
    threads: int = 32
    timeout: int = 10
    retries: int = 1
    samples_per_shard: int = SAMPLES_PER_SHARD

    def check(self) -> None:
        """Raise a ``ValueError`` naming the first bad option."""
        for name in ("processes", "threads", "timeout", "samples_per_shard"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.retries < 0:
            raise ValueError(f"--retries must be 0 or more, got {self.retries}")


def download(url_list: Path, output: Path, options: DownloadOptions, command: list[str]) -> None:
    """Run img2dataset on ``url_list`` (parquet with ``url``, ``caption`` and our row number) into ``output``.

    Shards already done (their stats file exists) are skipped. Images are kept as downloaded (no resize, no
    re-encoding): we decode and check them ourselves. A leftover img2dataset of a killed earlier run on the same
    folder is stopped first, so two never write the same shard.

    Raises:
        RuntimeError: img2dataset exited with an error (the end of its log is in the message).
    """
    output.mkdir(parents=True, exist_ok=True)
    stop_leftover(output)
    argv = [
        *command,
        f"--url_list={url_list}",
        "--input_format=parquet",
        "--url_col=url",
        "--caption_col=caption",
        f"--save_additional_columns=['{ROW_COLUMN}']",
        "--output_format=webdataset",
        f"--output_folder={output}",
        f"--processes_count={options.processes}",
        f"--thread_count={options.threads}",
        f"--number_sample_per_shard={options.samples_per_shard}",
        f"--oom_shard_count={SHARD_DIGITS}",
        f"--timeout={options.timeout}",
        f"--retries={options.retries}",
        "--resize_mode=no",
        "--disable_all_reencoding=True",
        "--extract_exif=False",
        "--enable_wandb=False",
        "--incremental_mode=incremental",
        "--distributor=multiprocessing",
    ]
    log_path = output / _LOG
    # no update check on import (it would wait on the network), no experiment tracking
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled", "WANDB_SILENT": "true"}
    with open(log_path, "ab") as log:
        # its own process group, so a leftover of a killed run can be stopped whole; it dies with us (Linux)
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, preexec_fn=_die_with_parent
        )
        (output / _PIDFILE).write_text(str(proc.pid))
        try:
            code = proc.wait()
        except BaseException:
            _kill_group(proc.pid)
            raise
    (output / _PIDFILE).unlink(missing_ok=True)
    if code != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"img2dataset exited with status {code}: {' | '.join(tail)} (log: {log_path})")


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def stop_leftover(output: Path) -> None:
    """Stop the processes of an img2dataset that an earlier, killed run started on ``output``.

    Only processes in the process group recorded in the folder (img2dataset's own group, made when it started)
    that run img2dataset or one of its ``multiprocessing`` workers are killed.
    """
    pidfile = output / _PIDFILE
    if not pidfile.exists():
        return
    try:
        pgid = int(pidfile.read_text().strip())
    except ValueError:
        pgid = None
    for stat in Path("/proc").glob("[0-9]*/stat") if pgid else ():
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[2]) == pgid and (
            b"img2dataset" in cmdline or b"multiprocessing" in cmdline
        ):  # field 5 of stat: the process group
            try:
                os.kill(int(stat.parent.name), signal.SIGKILL)
            except ProcessLookupError:
                pass
    pidfile.unlink(missing_ok=True)


def shard_name(number: int) -> str:
    return f"{number:0{SHARD_DIGITS}d}"


def shard_done(output: Path, number: int) -> bool:
    """Whether img2dataset finished download shard ``number`` (its stats file is written last)."""
    return (output / f"{shard_name(number)}_stats.json").exists()


@dataclass(frozen=True)
class Fetched:
    """One row's download result: the bytes when it downloaded, else img2dataset's error."""

    row: int
    image: bytes | None
    error: str | None


def read_shard(output: Path, number: int) -> dict[int, Fetched]:
    """The results of download shard ``number``, by our row number.

    Raises:
        FileNotFoundError: the shard is not there (not downloaded, or its files were removed).
    """
    import pyarrow.parquet as pq

    name = shard_name(number)
    table = pq.read_table(output / f"{name}.parquet", columns=["key", "status", "error_message", ROW_COLUMN])
    images: dict[str, bytes] = {}
    tar_path = output / f"{name}.tar"
    if tar_path.exists():
        with tarfile.open(tar_path) as tar:
            for member in tar:
                key, _, ext = Path(member.name).name.partition(".")
                if member.isfile() and ext not in ("json", "txt"):
                    images[key] = tar.extractfile(member).read()
    out = {}
    for key, status, error, row in zip(*(table[c].to_pylist() for c in table.column_names), strict=True):
        image = images.get(key) if status == "success" else None
        if status == "success" and image is None:
            raise FileNotFoundError(f"{tar_path} lacks the image of row {row} (the download shard is incomplete)")
        out[int(row)] = Fetched(int(row), image, None if image is not None else (error or status or "unknown"))
    return out


def forget_shard(output: Path, number: int) -> None:
    """Remove download shard ``number`` so that the next run downloads it again."""
    for suffix in ("_stats.json", ".parquet", ".tar"):
        (output / f"{shard_name(number)}{suffix}").unlink(missing_ok=True)


def drop_images(output: Path, number: int) -> None:
    """Delete the images of a download shard once they are in our shard (its row results stay)."""
    (output / f"{shard_name(number)}.tar").unlink(missing_ok=True)


_HTTP = re.compile(r"HTTP Error (\d+)")


def failure_reason(message: str) -> str:
    """A short, countable reason for a failed download: ``HTTP 404``, ``timeout``, ``connection refused``..."""
    match = _HTTP.search(message)
    if match:
        return f"HTTP {match.group(1)}"
    lower = message.lower()
    if "timed out" in lower or "timeout" in lower:
        return "timeout"
    if "connection refused" in lower:
        return "connection refused"
    if "name or service not known" in lower or "nodename nor servname" in lower or "getaddrinfo" in lower:
        return "unknown host"
    if "x-robots-tag" in lower:
        return "disallowed by X-Robots-Tag"
    text = re.sub(r"\s+", " ", message).strip()
    return text[:120] or "unknown"
