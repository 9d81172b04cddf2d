"""The ingestor's admin listener (LF_ADMIN_HOST:LF_ADMIN_PORT): `GET /metrics`, off the public port.

`/metrics` names every tenant's functions and their traffic, so it is not served where callers come in: the public
port answers it 404 like any unknown path. The admin listener runs in granian's main process, in a thread,
started after the workers are forked, and renders the snapshots the workers write to LF_METRICS_DIR
(`observability/metrics.py`). Why there and not in each worker:

- one listener whatever LF_WORKERS is: no second port shared by SO_REUSEPORT, and every scrape sees every worker
  (a worker's own listener would add its live numbers to the others' files; this one reads files only, so counts
  are at most LF_METRICS_FLUSH old, which is far below any scrape interval);
- it keeps answering while a worker dies or is restarted, and counts a dead worker's counters from its last file;
- rendering the text (milliseconds with many functions) no longer runs on a worker's event loop between calls.

Only `GET`/`HEAD /metrics`; anything else is 404 (405 for another method on /metrics).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from lf_dataplane.observability.metrics import SnapshotDir, render

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"


class AdminListener:
    """A bound admin socket; `start()` serves it from a daemon thread, `stop()` closes it."""

    def __init__(self, host: str, port: int, metrics_dir: str) -> None:
        snapshots = SnapshotDir(Path(metrics_dir))

        class Handler(BaseHTTPRequestHandler):
            server_version = "litefunctions"
            sys_version = ""

            def do_GET(self) -> None:
                self._answer(head=False)

            def do_HEAD(self) -> None:
                self._answer(head=True)

            def do_POST(self) -> None:
                self._refuse()

            do_PUT = do_DELETE = do_PATCH = do_POST  # noqa: N815

            def _answer(self, *, head: bool) -> None:
                if self.path.partition("?")[0] != METRICS_PATH:
                    self._send(404, b"not found\n", "text/plain; charset=utf-8", head=head)
                    return
                try:
                    text, content_type = render(snapshots)
                except Exception as exc:  # a broken snapshot must not take the listener down
                    log.exception("cannot render metrics", extra={"fields": {"error": repr(exc)}})
                    self._send(500, b"cannot render metrics\n", "text/plain; charset=utf-8", head=head)
                    return
                self._send(200, text, content_type, head=head)

            def _refuse(self) -> None:
                if self.path.partition("?")[0] == METRICS_PATH:
                    self._send(405, b"use GET\n", "text/plain; charset=utf-8", head=False, allow="GET, HEAD")
                else:
                    self._send(404, b"not found\n", "text/plain; charset=utf-8", head=False)

            def _send(self, status: int, body: bytes, content_type: str, *, head: bool, allow: str = "") -> None:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                if allow:
                    self.send_header("allow", allow)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # no access log
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)  # binds now: a taken port fails at start
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="lf-admin", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
        with contextlib.suppress(OSError):
            self._server.server_close()
