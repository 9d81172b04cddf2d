"""Running the ingestor under granian: RSGI, uvloop, the app factory, and a drain delay on SIGTERM.

How granian 2.8 stops (read in granian/server/mp.py and src/serve.rs, and checked by the integration tests):
the main process catches SIGTERM/SIGINT and sends SIGTERM to each worker, then joins them (killing them after
`workers_kill_timeout`). A worker, on SIGTERM, stops accepting at once (new connections are refused), lets the
in-flight requests finish (the Rust side waits for its connection tasks while the Python loop keeps running),
then calls the app's `__rsgi_del__`.

That leaves no moment in which /readyz could say 503: the listener is gone as soon as the worker knows. So the
first SIGTERM here only marks the workers as draining (SIGUSR1, see `Ingestor.begin_drain`) and hands the signal to
granian LF_DRAIN_DELAY later; a second SIGTERM/SIGINT stops at once. With the default delay of 0 the two happen
together.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import threading
from typing import Any
from urllib.parse import urlsplit

from granian.constants import HTTPModes, Interfaces, Loops
from granian.http import HTTP1Settings
from granian.server import MPServer

from lf_dataplane.observability.admin import AdminListener
from lf_dataplane.observability.jsonlogs import logging_config
from lf_dataplane.observability.metrics import prepare_dir
from lf_dataplane.settings import Settings

log = logging.getLogger(__name__)

APP_FACTORY = "lf_dataplane.http.app:create_app"
# hyper's default read buffer (8 KiB + 400 KiB); it bounds the request head, so it must exceed our header limit.
_DEFAULT_MAX_BUFFER = 8192 + 4096 * 100


class IngestorServer(MPServer):
    """granian's process server with a drain delay between SIGTERM and closing the listener."""

    def __init__(
        self, *args: Any, drain_delay_s: float = 0.0, admin: AdminListener | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.drain_delay_s = drain_delay_s
        self.admin = admin
        self._drain_started = False

    def startup(self, spawn_target: Any, target_loader: Any) -> None:
        """granian's startup (listener, workers forked), then the admin listener's thread: started after the fork
        so no worker inherits a running thread (granian starts its own metrics exporter at the same point)."""
        super().startup(spawn_target, target_loader)  # type: ignore[no-untyped-call]
        if self.admin is not None:
            self.admin.start()

    def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
        if self._drain_started:  # second signal: stop now
            super().signal_handler_interrupt()  # type: ignore[no-untyped-call]
            return
        self._drain_started = True
        log.info("draining", extra={"fields": {"delay_s": self.drain_delay_s}})
        for worker in list(self.wrks):
            pid = worker.inner.pid
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGUSR1)
                except ProcessLookupError:
                    pass
        if self.drain_delay_s <= 0:
            super().signal_handler_interrupt()  # type: ignore[no-untyped-call]
        else:
            timer = threading.Timer(self.drain_delay_s, super().signal_handler_interrupt)
            timer.daemon = True
            timer.start()


def build_server(settings: Settings, admin: AdminListener | None = None) -> IngestorServer:
    """A granian server for `settings`; `.serve()` blocks until it has stopped."""
    return IngestorServer(
        APP_FACTORY,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.RSGI,  # measured faster than ASGI for this handler (docs/architecture.md, "Decisions")
        loop=Loops.uvloop,
        factory=True,
        workers=settings.workers,
        # hyper-util's auto mode runs no timer while it detects the protocol, so a connection that never sends
        # a byte is held open; HTTP/1.1 alone starts the header read timeout at accept (hyper #3185, #3305).
        http=HTTPModes.http1 if settings.http == "1" else HTTPModes.auto,
        websockets=False,
        http1_settings=HTTP1Settings(
            header_read_timeout=settings.header_read_timeout_ms,
            max_buffer_size=max(_DEFAULT_MAX_BUFFER, settings.max_header_bytes + 16 * 1024),
        ),
        log_dictconfig=logging_config(settings.log_level),
        workers_kill_timeout=settings.drain_timeout_whole_s,
        drain_delay_s=settings.drain_delay_s,
        admin=admin,
    )


def redact_url(value: str) -> str:
    """The server list of LF_NATS_URL without user names, passwords or tokens, for the log (as the runtimes'
    `redacted_nats_url`); an entry without a scheme is read as nats://."""
    servers = []
    for server in value.split(","):
        server = server.strip()
        if not server:
            continue
        parts = urlsplit(server if "://" in server else f"nats://{server}")
        try:
            port = f":{parts.port}" if parts.port else ""
        except ValueError:  # not a number: shown as nothing rather than echoed
            port = ""
        servers.append(f"{parts.scheme}://{parts.hostname or ''}{port}")
    return ",".join(servers)


def serve(settings: Settings) -> int:
    """Run the ingestor until SIGTERM/SIGINT; the exit status is 0 unless a worker died on its own."""
    # Workers are forked from this process: let them ignore SIGUSR1 until their loop installs the drain handler.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    made_dir = None
    if settings.metrics:  # the workers' metrics snapshots meet here (metrics.py); they inherit the variable
        if not settings.metrics_dir:
            made_dir = tempfile.mkdtemp(prefix="lf-metrics-")
            os.environ["LF_METRICS_DIR"] = made_dir
        prepare_dir(os.environ["LF_METRICS_DIR"])
    admin = None
    if settings.metrics and settings.admin_port:  # bound before the workers start: a taken port fails here
        try:
            admin = AdminListener(settings.admin_host, settings.admin_port, os.environ["LF_METRICS_DIR"])
        except OSError as exc:
            log.error("cannot listen on the admin port", extra={"fields": {
                "host": settings.admin_host, "port": settings.admin_port, "error": str(exc)}})  # fmt: skip
            if made_dir is not None:
                shutil.rmtree(made_dir, ignore_errors=True)
            return 1
    server = build_server(settings, admin)
    log.info(
        "started",
        extra={"fields": {"host": settings.host, "port": settings.port, "workers": settings.workers,
                          "nats": redact_url(settings.nats_url),
                          "admin": f"{settings.admin_host}:{admin.port}" if admin is not None else ""}},
    )  # fmt: skip
    try:
        server.serve()
    finally:
        if admin is not None:
            admin.stop()
        if made_dir is not None:
            shutil.rmtree(made_dir, ignore_errors=True)
    failed = bool(server.interrupt_children)
    log.info("stopped", extra={"fields": {"failed_workers": len(server.interrupt_children)}})
    return 1 if failed else 0
