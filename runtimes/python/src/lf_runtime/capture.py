"""A function's stdout and stderr, captured per call and published to `lf.logs.{namespace}.{function}`.

`sys.stdout` and `sys.stderr` are replaced by tees: everything still reaches the process's own streams (so
`lf dev` and `kubectl logs` show it), and what a handler writes during a call is also kept under that call's id
(a context variable set in the call's own context: async handlers and sync handler threads alike). When the call
is answered, the replica publishes one message with the call's lines to the bounded JetStream stream `LF_LOGS`
(created by the ingestor, see `lf_dataplane.observability.functionlogs`); `lf logs NAME [--call ID]` reads it.

A call that writes nothing costs a context-variable set and one truthiness check. Output per call is capped
(LOG_CAPTURE_MAX_BYTES): beyond it the rest is counted, not kept.
"""

from __future__ import annotations

import contextvars
import json
import os
import socket
import sys
import time
from typing import IO, Any

MAX_BYTES = 64 * 1024
CALL_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("lf_call_id", default=None)


class CallOutput:
    """Output written during calls, by call id, until the call is answered."""

    def __init__(self, namespace: str, function: str, max_bytes: int = MAX_BYTES) -> None:
        self.subject = f"lf.logs.{namespace}.{function}"
        self.namespace = namespace
        self.function = function
        self.replica = f"{socket.gethostname()}/{os.getpid()}"
        self.max_bytes = max_bytes
        self.pending: dict[str, list[Any]] = {}
        """call id -> [size, dropped bytes, [(stream, text), ...]]"""

    def install(self) -> None:
        sys.stdout = _Tee(sys.stdout, "stdout", self)
        sys.stderr = _Tee(sys.stderr, "stderr", self)

    def add(self, call_id: str, stream: str, text: str) -> None:
        entry = self.pending.get(call_id)
        if entry is None:
            entry = self.pending[call_id] = [0, 0, []]
        if entry[0] + len(text) > self.max_bytes:
            entry[1] += len(text)
            return
        entry[0] += len(text)
        chunks = entry[2]
        if chunks and chunks[-1][0] == stream:
            chunks[-1] = (stream, chunks[-1][1] + text)
        else:
            chunks.append((stream, text))

    def take(self, call_id: str) -> bytes | None:
        """The message for `call_id`'s output (None if it wrote nothing); forgets it."""
        entry = self.pending.pop(call_id, None)
        if entry is None:
            return None
        lines = []
        for stream, text in entry[2]:
            for line in text.splitlines():
                lines.append({"stream": stream, "text": line})
        record: dict[str, Any] = {
            "ts": time.time(), "call_id": call_id, "namespace": self.namespace, "function": self.function,
            "replica": self.replica, "lines": lines,
        }  # fmt: skip
        if entry[1]:
            record["dropped_bytes"] = entry[1]
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


class _Tee:
    """A text stream writing through to `inner`, keeping a copy of what is written during a call."""

    def __init__(self, inner: IO[str], name: str, output: CallOutput) -> None:
        self._inner = inner
        self._name = name
        self._output = output

    def write(self, text: str) -> int:
        call_id = CALL_ID.get()
        if call_id is not None and text:
            self._output.add(call_id, self._name, text)
        return self._inner.write(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
