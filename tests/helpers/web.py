"""A loopback image server for the URL-ingest tests and benchmark: images written by the test, plus failures.

``ImageServer`` listens on 127.0.0.1 (a free port) in a daemon thread and serves:

* ``/img/NAME``: the bytes the test put in ``server.images[NAME]`` (404 when absent);
* ``/missing/NAME``: 404;
* ``/slow/NAME``: sleeps ``slow_seconds`` (longer than the downloader's timeout), then answers;
* ``/page/NAME``: an HTML page with status 200 (not an image);
* ``/hold/NAME``: waits until ``server.release`` is set (or ``hold_seconds``), then serves ``images[NAME]``.

Every request is counted in ``server.requests[path]``. Use it as a context manager: it stops on exit, and a
forgotten one dies with the test process. A URL ingest refuses loopback addresses unless told otherwise: pass
:data:`ALLOW_LOOPBACK` on its command line (``allow_private_addresses=True`` to ``ingest_urls``, the same key in
a recipe's ``urls`` step).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ALLOW_LOOPBACK = ("--allow-private-addresses",)  # the server is on 127.0.0.1, which a URL ingest refuses by default


class ImageServer:
    """A threaded HTTP server on 127.0.0.1 with the routes above."""

    def __init__(self, slow_seconds: float = 4.0, hold_seconds: float = 120.0):
        self.images: dict[str, bytes] = {}
        self.requests: Counter = Counter()
        self.release = threading.Event()
        self.slow_seconds = slow_seconds
        self.hold_seconds = hold_seconds
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802 (the http.server name)
                with server._lock:
                    server.requests[self.path] += 1
                _, route, name = (self.path.split("/", 2) + ["", ""])[:3]
                if route == "slow":
                    time.sleep(server.slow_seconds)
                    route = "img"
                if route == "hold":
                    server.release.wait(server.hold_seconds)
                    route = "img"
                if route == "page":
                    return self._send(200, b"<html><body>not an image</body></html>", "text/html")
                if route == "img" and name in server.images:
                    return self._send(200, server.images[name], "application/octet-stream")
                return self._send(404, b"not found", "text/plain")

            def _send(self, status: int, body: bytes, kind: str) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, route: str, name: str) -> str:
        return f"{self.base}/{route}/{name}"

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
