"""A real ``dataigm`` command in a subprocess, killed with SIGKILL in the middle of its work (its shards, or any
point a patch makes it pause at)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Runs in the child: ``patch`` (Python that makes the job sleep at a chosen point, so the kill always lands mid-run
# however fast the machine is), then the command.
_CHILD = """
import sys, time
{patch}
from dataigm.cli import main
sys.exit(main({argv!r}))
"""

# Before the patch with ``one_thread``: tiny torch models run faster on one thread than on a shared CPU's several.
_ONE_THREAD = """
import torch
torch.set_num_threads(1)
"""

# A shard job: once ``pause_after`` shard tars are in the root (counted as the parent counts them, so a job that
# rewrites shards of an existing root pauses at the same point), right after a tar is renamed into place and before
# that shard's sidecar is written, the job sleeps.
_PAUSE_AFTER_TARS = """
import os
from pathlib import Path
_replace = os.replace
def _replace_then_pause(src, dst, *args, **kwargs):
    _replace(src, dst, *args, **kwargs)
    if str(dst).endswith(".tar") and len(list(Path({root!r}, "data").rglob("*.tar"))) >= {pause_after}:
        time.sleep(3600)
os.replace = _replace_then_pause
"""


def kill_when(
    argv: list[str], patch: str, ready: Callable[[], bool], what: str, timeout: float = 300.0, one_thread: bool = False
) -> None:
    """Run ``dataigm ARGV`` in a subprocess after ``patch`` (see ``_CHILD``) and SIGKILL it once ``ready()``.

    Raises:
        AssertionError: the job ended on its own (its stderr's tail said), or no ``what`` within ``timeout``.
    """
    code = _CHILD.format(patch=(_ONE_THREAD if one_thread else "") + patch, argv=list(argv))
    err = tempfile.TemporaryFile()  # a file, not a pipe: a chatty child never blocks on a full pipe
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                err.seek(0)
                tail = err.read().decode(errors="replace")[-2000:]
                raise AssertionError(f"the job ended (exit {proc.returncode}) before the kill:\n{tail}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} after {timeout:.0f} s")
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        err.close()
    assert proc.returncode == -signal.SIGKILL, proc.returncode


def kill_mid_run(argv: list[str], root: Path, pause_after: int = 3, timeout: float = 300.0) -> int:
    """Run ``dataigm ARGV`` in a subprocess, SIGKILL it once ``pause_after`` shard tars are in ``root``.

    Returns:
        The number of shard sidecars (shards marked done) in ``root`` when the kill landed.

    Raises:
        AssertionError: the job ended on its own, or did not reach ``pause_after`` shards within ``timeout``.
    """
    patch = _PAUSE_AFTER_TARS.format(root=str(root), pause_after=pause_after)
    kill_when(argv, patch, lambda: len(list((root / "data").rglob("*.tar"))) >= pause_after,
              f"{pause_after} shards", timeout)  # fmt: skip
    return len(list((root / "meta").rglob("*.json")))
