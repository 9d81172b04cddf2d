"""JSON for the runtime (request bodies, dict/list answers): msgspec, imported on first use and without
`typing_extensions`.

Reasons:
1. Start-up: importing msgspec took ~20% of a replica's imports (spawn → first response is budgeted at
   100 ms, docs/architecture.md "Budgets"), and a handler that answers bytes or text never needs it. So `encode`
   and `decode` start as stand-ins that import msgspec, rebind themselves to its encoder and decoder, and carry
   on: call them as `jsoncodec.encode(...)` (not bound to a local name at import) so later calls go straight to
   msgspec.
   `DecodeError` is rebound at the same time; an `except jsoncodec.DecodeError` around a `decode` call is only
   evaluated after that call ran, so it always sees msgspec's class.
2. RSS: msgspec imports `typing_extensions` when it is installed, only to backport typing features Python 3.11
   already has; in a replica that single import cost 5.9 MiB of RSS against the budget of 30 MiB for a warm
   idle replica. So it is hidden while msgspec loads, and msgspec falls back to `typing`. The handler can
   still import `typing_extensions` itself.

The runtime's own log lines use the standard library's `json` (see `logs.py`).
"""

from __future__ import annotations

import sys
from typing import Any


class _StandInDecodeError(ValueError):
    """`DecodeError` until msgspec is loaded."""


DecodeError: type[Exception] = _StandInDecodeError
"""msgspec.DecodeError once `decode` ran."""


def encode(value: Any) -> bytes:
    """`value` as JSON bytes (msgspec: dicts, lists, dataclasses, Structs, datetimes, ...)."""
    _load()
    return encode(value)


def decode(data: bytes) -> Any:
    """Parse JSON bytes. Raises `DecodeError` (msgspec's) when they are not JSON."""
    _load()
    return decode(data)


def _load() -> None:
    global encode, decode, DecodeError  # the point: later calls go straight to msgspec
    msgspec = _import_msgspec()
    encode = msgspec.json.Encoder().encode
    decode = msgspec.json.Decoder().decode
    DecodeError = msgspec.DecodeError


def _import_msgspec() -> Any:
    if "msgspec" in sys.modules or "typing_extensions" in sys.modules:
        import msgspec

        return msgspec
    sys.modules["typing_extensions"] = None  # type: ignore[assignment]  # makes `import typing_extensions` fail
    try:
        import msgspec
    finally:
        del sys.modules["typing_extensions"]
    return msgspec
