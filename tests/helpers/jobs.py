"""A real ``dataigm`` command in a subprocess, killed with SIGKILL in the middle of its shards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runs in the child: once ``pause_after`` shard tars are in the root (counted as the parent counts them, so a job
# that rewrites shards of an existing root pauses at the same point), right after a tar is renamed into place and
# before that shard's sidecar is written, the job sleeps: the kill always lands mid-run however fast the machine is.
_CHILD = """
import os, sys, time
from pathlib import Path
_replace = os.replace
def _replace_then_pause(src, dst, *args, **kwargs):
    _replace(src, dst, *args, **kwargs)
    if str(dst).endswith(".tar") and len(list(Path({root!r}, "data").rglob("*.tar"))) >= {pause_after}:
        time.sleep(3600)
os.replace = _replace_then_pause
from dataigm.cli import main
sys.exit(main({argv!r}))
"""


def kill_mid_run(argv: list[str], root: Path, pause_after: int = 3, timeout: float = 300.0) -> int:
    """Run ``dataigm ARGV`` in a subprocess, SIGKILL it once ``pause_after`` shard tars are in ``root``.

    Returns:
        The number of shard sidecars (shards marked done) in ``root`` when the kill landed.

    Raises:
        AssertionError: the job ended on its own, or did not reach ``pause_after`` shards within ``timeout``.
    """
    code = _CHILD.format(pause_after=pause_after, argv=list(argv), root=str(root))
    err = tempfile.TemporaryFile()  # a file, not a pipe: a chatty child never blocks on a full pipe
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + timeout
    try:
        while len(list((root / "data").rglob("*.tar"))) < pause_after:
            if proc.poll() is not None:
                err.seek(0)
                tail = err.read().decode(errors="replace")[-2000:]
                raise AssertionError(f"the job ended (exit {proc.returncode}) before the kill:\n{tail}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pause_after} shards after {timeout:.0f} s")
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        err.close()
    assert proc.returncode == -signal.SIGKILL, proc.returncode
    return len(list((root / "meta").rglob("*.json")))
