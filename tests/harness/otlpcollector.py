"""An in-process OTLP/HTTP trace collector for tests: an `http.server` on 127.0.0.1 that decodes the
`ExportTraceServiceRequest`s posted to `/v1/traces` (gzip or not) and keeps every span with its resource's
`service.name`. Used by tests/integration/tracing and runtimes/conformance/test_observability.py.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span


@dataclass
class Exported:
    service: str
    span: Span

    def attr(self, key: str) -> Any:
        for kv in self.span.attributes:
            if kv.key == key:
                value: AnyValue = kv.value
                return getattr(value, value.WhichOneof("value") or "string_value")
        return None


class Collector:
    """POST /v1/traces → the spans, with their resource's service.name."""

    def __init__(self) -> None:
        self.spans: list[Exported] = []
        self._changed = threading.Condition()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                request = ExportTraceServiceRequest.FromString(body)
                collector.add(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @classmethod
    @contextmanager
    def running(cls) -> Iterator[Collector]:
        """A collector serving until the block ends (what the suites' `collector` fixtures yield)."""
        collector = cls()
        collector.thread.start()
        try:
            yield collector
        finally:
            collector.server.shutdown()
            collector.server.server_close()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, request: ExportTraceServiceRequest) -> None:
        found: list[Exported] = []
        for resource_spans in request.resource_spans:
            service = next(
                (kv.value.string_value for kv in resource_spans.resource.attributes if kv.key == "service.name"), ""
            )
            for scope_spans in resource_spans.scope_spans:
                found.extend(Exported(service, span) for span in scope_spans.spans)
        with self._changed:
            self.spans.extend(found)
            self._changed.notify_all()

    def wait_for(self, predicate: Any, count: int, timeout: float = 15.0) -> list[Exported]:
        end = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [s for s in self.spans if predicate(s)]
                if len(found) >= count:
                    return found
                left = end - time.monotonic()
                assert left > 0, f"{len(found)} of {count} spans exported: {[s.span.name for s in self.spans]}"
                self._changed.wait(min(left, 0.1))


def otel_env(endpoint: str) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
