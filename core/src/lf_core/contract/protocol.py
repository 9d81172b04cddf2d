"""Constants of the call protocol shared by the ingestor and every runtime (see docs/protocol.md)."""

from __future__ import annotations

import enum


class ErrorKind(enum.IntEnum):
    """Why a runtime's response is not the handler's own answer. Carried in the response envelope."""

    NONE = 0
    HANDLER = 1  # the handler raised: 500
    TIMEOUT = 2  # the handler overran the call's budget: 504
    BUSY = 3  # the replica is at its concurrency limit and its queue is full: the ingestor retries elsewhere
    BAD_REQUEST = 4  # the runtime could not decode the request envelope: 502
    RESPONSE_TOO_LARGE = 5  # the handler's response exceeded the function's limit: 502
    INTERNAL = 6  # the runtime failed outside the handler (bad return value, ...): 502


# How much of the call's budget a runtime keeps back, so its own 504 reaches the client before any other layer
# gives up: min(budget * FRACTION, MAX) milliseconds.
RUNTIME_MARGIN_FRACTION = 0.05
RUNTIME_MARGIN_MAX_MS = 50
