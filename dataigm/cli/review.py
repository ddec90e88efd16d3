"""``dataigm review ROOT --queue FILE``: a local page to check the queued images' labels, one key per decision.

Every decision is appended to the decisions file (``--decisions``, default ``<queue>.decisions.jsonl``) and synced
at once; running the command again continues where the last run stopped. Apply the decisions with
``dataigm curate apply ROOT --decisions FILE``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .options import add_options

HELP = "review queued labels on a local web page (keys: k keep, f flip, s skip); decisions saved at once"


@dataclass
class ReviewOptions:
    """The options of ``dataigm review``.

    Attributes:
        root: dataset root
        queue: review queue (JSON lines from dataigm judge agree)
        decisions: decisions file, created or continued (default: the queue's name with .decisions.jsonl)
        port: port on 127.0.0.1 (0: a free one)
        idle_minutes: stop the server after this many minutes without a request
        open: open the page in the default browser
    """

    root: str
    queue: str
    decisions: str | None = None
    port: int = 0
    idle_minutes: float = 30.0
    open: bool = False


def decisions_path(queue: str | Path) -> Path:
    """The default decisions file of a queue: ``queue.jsonl`` -> ``queue.decisions.jsonl``."""
    queue = Path(queue)
    return queue.with_name(queue.name.removesuffix(".jsonl") + ".decisions.jsonl")


def configure(parser) -> None:
    add_options(parser, ReviewOptions, positional=("root",))


def run(cfg) -> int:
    from ..manifest import read_manifest
    from ..review import ReviewServer

    read_manifest(cfg.root)  # a root that is not a dataset: one line before anything else
    if not 0 <= cfg.port <= 65535:
        raise ValueError(f"--port {cfg.port} must be 0 (a free port) or a port number up to 65535")
    if cfg.idle_minutes <= 0:
        raise ValueError(f"--idle-minutes {cfg.idle_minutes} must be more than 0")
    decisions = Path(cfg.decisions) if cfg.decisions else decisions_path(cfg.queue)
    server = ReviewServer(cfg.root, cfg.queue, decisions, port=cfg.port, idle_seconds=60 * cfg.idle_minutes)
    done = sum(1 for item in server.state()["items"] if item["decision"] is not None)
    print(f"review {len(server.items)} image(s) ({done} decided already) at {server.url}", flush=True)
    print(f"decisions: {decisions}; the server stops after {cfg.idle_minutes:g} idle minute(s) or from the page")
    if cfg.open:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    print(f"stopped; apply the decisions with: dataigm curate apply {cfg.root} --decisions {decisions}")
    return 0
