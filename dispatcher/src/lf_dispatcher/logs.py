"""JSON log lines on stderr, one object per line, as the ingestor writes them (`lf dev` shows them readably):
`log.info("async_ready", extra={"fields": {...}})` becomes `{"ts", "level", "logger", "pid", "event", ...fields}`.
Nothing is logged per call unless something went wrong with it."""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": os.getpid(),
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _encode(line).decode()


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("lf_dispatcher", "lf_core"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    nats_log = logging.getLogger("nats")
    nats_log.handlers[:] = [handler]
    nats_log.setLevel(logging.WARNING)
    nats_log.propagate = False
