"""The ingestor's loggers as JSON lines on stderr (`lf_core.jsonlogs`), ours and granian's, one object per line.
Nothing is logged per request: the hot path only counts."""

from __future__ import annotations

from typing import Any

from lf_core import jsonlogs


def logging_config(level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` mapping; granian applies it in its main process and in every worker."""
    others = {"_granian": "INFO", "granian.access": "WARNING", **jsonlogs.QUIET}
    return jsonlogs.dict_config(level, ("lf_dataplane", "lf_core", "lf_valkey"), others=others)
