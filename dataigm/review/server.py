"""The label review page: a local web server (127.0.0.1 only) over a review queue and its decisions file.

The standard library's ``http.server`` is enough for one person on one machine (a page, a JSON state, the
images and one POST per decision), so the review needs no web framework. The server stops by itself after
``idle_seconds`` without a request, or when the page's "stop" button (``POST /api/stop``) is pressed.

Routes: ``GET /`` the page; ``GET /api/state`` the queue with every item's record, verdicts and decision;
``GET /image/<index>`` the image's bytes, read from its shard; ``POST /api/decision`` ``{"index", "decision"}``
appends to the decisions file (synced before the answer); ``POST /api/stop``.

Any page open in the browser can send requests to 127.0.0.1, so the server answers only requests meant for it:

* the ``Host`` header must be ``127.0.0.1:<port>`` or ``localhost:<port>`` (a site whose name an attacker
  rebinds to 127.0.0.1 sends its own name: DNS rebinding), else 403;
* a POST with an ``Origin`` must come from the page itself, else 403;
* a body is one JSON object of at most :data:`MAX_BODY` bytes (413 above, 400 for a bad ``Content-Length`` or
  anything that is not a JSON object), and a decision's ``index`` an integer of the queue (not a bool, a float or
  a negative index), else 400. A bad request gets its answer and the server goes on serving.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

from ..manifest import read_manifest
from ..reader import read_at
from ..schema import LABELS
from .decisions import CHOICES, DecisionLog
from .queue import QueueItem, load_queue

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
MAX_BODY = 64 * 1024  # a decision is under 100 bytes
_DRAIN_LIMIT = 1024 * 1024  # a body this long is read and dropped before the 413, so the client sees the answer
_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}


class _Refused(Exception):
    """A request answered with an error status (the message is the answer's ``error``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ReviewServer(ThreadingHTTPServer):
    """Serves the review of one queue; ``serve()`` blocks until stopped or idle.

    Args:
        root: the dataset root.
        queue_path: the review queue (JSON lines).
        decisions_path: the decisions file, created or continued.
        port: 0 for a free port.
        idle_seconds: stop after this long without a request.

    Raises:
        ValueError: the queue names images the root does not hold, or the decisions file is about another
            dataset or queue (nothing is written then).
    """

    daemon_threads = True

    def __init__(self, root: str | Path, queue_path: str | Path, decisions_path: str | Path, port: int = 0,
                 idle_seconds: float = 1800.0):  # fmt: skip
        self.root = Path(root)
        self.items: list[QueueItem] = load_queue(root, queue_path)
        self.idle_seconds = float(idle_seconds)
        self.last_request = time.monotonic()
        self.page = resources.files(__package__).joinpath("page.html").read_bytes()
        # each concept's class names (e.g. nude / safe), shown next to target / pair
        concepts = read_manifest(root)["concepts"]
        self.class_names = {cid: (c["pair_class"], c["target_class"]) for cid, c in concepts.items()}
        try:
            super().__init__((HOST, port), _Handler)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise ValueError(
                    f"--port {port} is in use on {HOST}; give another port, or 0 for a free one"
                ) from None
            raise
        try:  # the decisions file last: a refused start writes nothing
            self.log = DecisionLog(decisions_path, root, queue_path)
        except BaseException:
            self.server_close()
            raise

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"

    @property
    def hosts(self) -> tuple[str, ...]:
        """The ``Host`` values of requests meant for this server."""
        port = self.server_address[1]
        return (f"{HOST}:{port}", f"localhost:{port}")

    def item(self, index: object) -> QueueItem:
        """The queue item at ``index``: an int (not a bool) from 0 to the last item.

        Raises:
            ValueError: anything else (a negative index, a float, a bool, a string).
        """
        if type(index) is not int or not 0 <= index < len(self.items):
            raise ValueError(f"index must be an integer from 0 to {len(self.items) - 1}, got {index!r}")
        return self.items[index]

    def state(self) -> dict:
        """The queue with each item's record, verdicts and current decision; ``next``: the first undecided item."""
        latest = self.log.decisions.latest
        items = []
        for item in self.items:
            record = item.record
            decided = latest.get(item.uid)
            items.append(
                {
                    "index": item.index,
                    "key": item.key,
                    "shard": item.shard,
                    "concept": record["concept"],
                    "source": record["source"],
                    "method": record.get("method"),
                    "model": record.get("model"),
                    "prompt": record.get("prompt"),
                    "label": LABELS[item.cls],
                    "class_name": self.class_names.get(record["concept"], LABELS)[item.cls],
                    "other_class_name": self.class_names.get(record["concept"], LABELS)[1 - item.cls],
                    "label_source": record.get("label_source"),
                    "reason": item.reason,
                    "judges": item.judges,
                    "decision": decided["decision"] if decided else None,
                }
            )
        undecided = [i["index"] for i in items if i["decision"] is None]
        return {
            "dataset": self.log.decisions.dataset["name"],
            "decisions_file": str(self.log.path),
            "root": str(self.root),
            "items": items,
            "next": undecided[0] if undecided else None,
            "choices": list(CHOICES),
        }

    def serve(self) -> None:
        """Serve until the page says stop or no request came for ``idle_seconds``."""
        watcher = threading.Thread(target=self._stop_when_idle, daemon=True)
        watcher.start()
        try:
            self.serve_forever(poll_interval=0.2)
        finally:
            self.server_close()

    def _stop_when_idle(self) -> None:
        while True:
            time.sleep(min(1.0, self.idle_seconds / 4))
            if time.monotonic() - self.last_request > self.idle_seconds:
                logger.info("no request for %.0f s: stopping the review server", self.idle_seconds)
                self.shutdown()
                return

    def stop_soon(self) -> None:
        """Stop after the current answer is sent (``shutdown`` waits for the serving loop, so not inline)."""
        threading.Thread(target=self.shutdown, daemon=True).start()


class _Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    timeout = 30  # seconds a client may take to send its request: a stalled one does not hold a thread forever

    def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
        logger.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: dict, status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _check_host(self) -> None:
        host = (self.headers.get("Host") or "").strip().lower()
        if host not in self.server.hosts:
            # DNS rebinding: another site's page whose name now resolves to 127.0.0.1 sends its own name
            allowed = " and ".join(f"http://{h}/" for h in self.server.hosts)
            raise _Refused(HTTPStatus.FORBIDDEN, f"requests for host {host!r} are refused: only {allowed} are served")

    def _body(self) -> dict:
        """The request's JSON object; a body that is not one is refused (and the connection closed)."""
        text = self.headers.get("Content-Length", "0")
        if not (text.strip().isascii() and text.strip().isdigit()):
            self.close_connection = True  # where the body ends is unknown: nothing more is read from this client
            raise _Refused(HTTPStatus.BAD_REQUEST, f"Content-Length {text!r} is not a number of bytes")
        length = int(text)
        if length > MAX_BODY:
            self.close_connection = True
            if length <= _DRAIN_LIMIT:
                with contextlib.suppress(OSError):
                    self.rfile.read(length)
            raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is larger than {MAX_BODY} bytes")
        try:
            data = self.rfile.read(length)
        except OSError as err:  # a client that stalls past the timeout
            self.close_connection = True
            raise _Refused(HTTPStatus.BAD_REQUEST, f"the body did not arrive ({err})") from None
        try:
            body = json.loads(data or b"{}")
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the parser's recursion
            raise _Refused(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise _Refused(HTTPStatus.BAD_REQUEST, f"the body is not a JSON object (got a {type(body).__name__})")
        return body

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.last_request = time.monotonic()
        try:
            self._check_host()
        except _Refused as refused:
            self._json({"error": str(refused)}, refused.status)
            return
        if self.path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8")
        elif self.path == "/api/state":
            self._json(self.server.state())
        elif self.path.startswith("/image/"):
            index = self.path.removeprefix("/image/")
            try:
                item = self.server.item(int(index) if index.isascii() and index.isdigit() else index)
            except ValueError:
                self._json({"error": f"no image {self.path}"}, HTTPStatus.NOT_FOUND)
                return
            data = read_at(self.server.root / item.shard, item.offset, item.size)
            self._send(HTTPStatus.OK, data, _TYPES.get(item.ext, "application/octet-stream"))
        else:
            self._json({"error": f"no page {self.path}"}, HTTPStatus.NOT_FOUND)

    def do_POST(self) -> None:  # noqa: N802
        self.server.last_request = time.monotonic()
        try:
            self._check_host()
            origin = self.headers.get("Origin")
            if origin is not None and origin.rstrip("/") != self.server.url.rstrip("/"):
                # only the page itself may decide: another site open in the browser must not post here
                raise _Refused(HTTPStatus.FORBIDDEN, f"requests from {origin} are refused")
            body = self._body()
        except _Refused as refused:
            self._json({"error": str(refused)}, refused.status)
            return
        if self.path == "/api/stop":
            self._json({"stopped": True})
            self.server.stop_soon()
        elif self.path == "/api/decision":
            try:
                item = self.server.item(body.get("index"))
                line = self.server.log.append(item, body.get("decision"))
            except ValueError as err:
                self._json({"error": str(err)}, HTTPStatus.BAD_REQUEST)
                return
            self._json({"saved": line, "next": self.server.state()["next"]})
        else:
            self._json({"error": f"no action {self.path}"}, HTTPStatus.NOT_FOUND)
