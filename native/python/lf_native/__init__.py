"""LiteFunctions native core: the routing table and the envelope codec, compiled from Rust.

Everything public lives in the compiled module `lf_native._native` and is re-exported here; import from
`lf_native`, not from `_native`.
"""

from lf_native._native import (
    ENVELOPE_VERSION,
    EnvelopeError,
    Header,
    MethodNotAllowed,
    RequestEnvelope,
    ResponseEnvelope,
    RouteNotFound,
    RoutingTable,
    __version__,
    build_profile,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)

__all__ = [
    "ENVELOPE_VERSION",
    "EnvelopeError",
    "Header",
    "MethodNotAllowed",
    "RequestEnvelope",
    "ResponseEnvelope",
    "RouteNotFound",
    "RoutingTable",
    "__version__",
    "build_profile",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
]
