"""Response envelopes the runtime writes itself: errors (timeout, busy, ...) and the 400 for unreadable input.

The status of each error kind follows docs/protocol.md "Error kinds"; the message goes in the envelope's `error`
field and the body stays empty, so the ingestor renders the one JSON error shape (docs/architecture.md, "HTTP surface").
"""

from __future__ import annotations

from lf_core.contract.protocol import ErrorKind
from lf_native import encode_response

from lf_runtime import jsoncodec

STATUS = {
    ErrorKind.HANDLER: 500,
    ErrorKind.TIMEOUT: 504,
    ErrorKind.BUSY: 503,
    ErrorKind.BAD_REQUEST: 502,
    ErrorKind.RESPONSE_TOO_LARGE: 502,
    ErrorKind.INTERNAL: 502,
}
MAX_MESSAGE_CHARS = 4096  # an exception's message can be anything; the envelope carries a readable prefix

_JSON = [("content-type", "application/json")]


def error(call_id: str, kind: ErrorKind, message: str, duration_ns: int = 0, cold_start: bool = False) -> bytes:
    """The response envelope for a call the handler did not answer itself."""
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return encode_response(STATUS[kind], [], b"", call_id, int(kind), message, duration_ns, cold_start)


def bad_input(call_id: str, message: str, duration_ns: int = 0, cold_start: bool = False) -> bytes:
    """A 400 for a request the handler could not read (`RequestError` left uncaught): the caller's fault."""
    body = jsoncodec.encode({"error": {"code": 400, "message": message[:MAX_MESSAGE_CHARS], "layer": "function"}})
    return encode_response(400, _JSON, body, call_id, int(ErrorKind.NONE), "", duration_ns, cold_start)
