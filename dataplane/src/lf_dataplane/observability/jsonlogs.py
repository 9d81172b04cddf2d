"""JSON log lines on stderr, for our own records and granian's, one object per line.

`log.info("ready", extra={"fields": {...}})` becomes
`{"ts": "...", "level": "info", "logger": "lf_dataplane.http.app", "event": "ready", ...fields}`.
Nothing is logged per request: the hot path only counts.
"""

from __future__ import annotations

import logging
import os
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


def logging_config(level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` mapping; granian applies it in its main process and in every worker."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "lf_dataplane.observability.jsonlogs.JsonFormatter"}},
        "handlers": {"stderr": handler},
        "loggers": {
            "_granian": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "granian.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
            "lf_dataplane": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "lf_core": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "lf_valkey": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "nats": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        },
    }
