"""JSON log lines on stderr, one object per line, as every platform process writes them (`lf dev` shows them
readably): `log.info("ready", extra={"fields": {...}})` becomes
`{"ts": "...", "level": "info", "logger": "lf_dispatcher", "pid": 123, "event": "ready", ...fields}`, and an
exception adds `"exception"`. Nothing is logged per call or request unless something went wrong with it.

Which loggers a process sends here, and at which levels, is the process's own choice: `configure` sets them up in
this process; `dict_config` gives the same as a `logging.config.dictConfig` mapping, for servers that apply it in
each of their processes themselves (granian's workers)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode

QUIET: Mapping[str, str] = {"nats": "WARNING"}
"""Libraries' loggers every process keeps at warnings: the NATS client logs each reconnect attempt at info."""


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


def _levels(level: str, loggers: Iterable[str], others: Mapping[str, str]) -> dict[str, str]:
    return {name: level.upper() for name in loggers} | {name: other.upper() for name, other in others.items()}


def configure(level: str, loggers: Iterable[str], *, others: Mapping[str, str] = QUIET) -> None:
    """Send `loggers` at `level` and `others` at their own levels to stderr as JSON lines, not to the root logger.
    Other loggers' handlers are left as they are."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name, name_level in _levels(level, loggers, others).items():
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(name_level)
        logger.propagate = False


def dict_config(level: str, loggers: Iterable[str], *, others: Mapping[str, str] = QUIET) -> dict[str, Any]:
    """`configure` as a `logging.config.dictConfig` mapping (existing loggers are not disabled)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {
            name: {"handlers": ["stderr"], "level": name_level, "propagate": False}
            for name, name_level in _levels(level, loggers, others).items()
        },
    }
