"""The runtime's own structured log: one JSON object per line on stderr.

Events: `started`, `ready`, `call_failed` (with `call_id` and `traceback`), `stuck`, `stuck_returned`,
`draining`, `drain_timeout`, `stopped`, plus NATS connection events. Successful calls are not logged (hot path).
stdout is left to the handler's own `print()`.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import IO, Any

# The standard library's json, not msgspec: a replica that never handles JSON doesn't import msgspec at all
# (see jsoncodec.py), and log lines are off the hot path. An odd value is written as its repr.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=repr).encode


class Log:
    """Writes events with a fixed set of context fields (function, namespace). Safe from any thread."""

    def __init__(self, stream: IO[str] | None = None, **context: Any) -> None:
        self._stream = stream
        self._context = context
        self._lock = threading.Lock()

    def event(self, event: str, level: str = "info", **fields: Any) -> None:
        now = time.time()
        record = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z",
            "level": level,
            "event": event,
            **self._context,
            **fields,
        }
        line = _encode(record) + "\n"
        stream = self._stream or sys.stderr
        with self._lock:
            stream.write(line)
            stream.flush()

    def warning(self, event: str, **fields: Any) -> None:
        self.event(event, "warning", **fields)

    def error(self, event: str, **fields: Any) -> None:
        self.event(event, "error", **fields)
