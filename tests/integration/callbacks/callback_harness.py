"""What the callback tests share: LF_RESULTS over nats-py, and real local HTTP receivers with scripted behaviour."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lf_core.asynccalls import streams as js
from lf_core.bus import jetstream


class Results:
    """LF_RESULTS over a nats-py connection: what the dispatcher stores, read back as the ingestor would."""

    def __init__(self, request: jetstream.Requester) -> None:
        self.request = request

    async def store(self, record: js.CallRecord) -> None:
        await jetstream.kv_put(self.request, js.RESULTS_BUCKET, record.call_id, js.encode_record(record), revision=None)

    async def get(self, call_id: str) -> js.CallRecord:
        found = await jetstream.kv_get(self.request, js.RESULTS_BUCKET, call_id)
        assert found is not None, f"no record of {call_id}"
        return js.decode_record(found[0])


class Received:
    """What a receiver got: (path, headers, body) per request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.release = threading.Event()


Behaviour = Callable[[BaseHTTPRequestHandler, Received], None]


def answer(status: int) -> Behaviour:
    def behave(handler: BaseHTTPRequestHandler, received: Received) -> None:
        handler.send_response(status)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return behave


def never_answer(handler: BaseHTTPRequestHandler, received: Received) -> None:
    received.release.wait(30)


def trickle(handler: BaseHTTPRequestHandler, received: Received) -> None:
    """A status line one byte at a time, every 0.1 s: each read makes progress, only a total deadline ends it."""
    for byte in b"HTTP/1.1 200 OK" + b" " * 400:
        if received.release.wait(0.1):
            return
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()


class ReceiverServer:
    def __init__(self, behaviour: Behaviour) -> None:
        self.received = received = Received()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                server.behaviour(self, received)

            def log_message(self, *args: Any) -> None:
                pass

        server = self
        self.behaviour = behaviour
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?x=1"

    def stop(self) -> None:
        self.received.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
