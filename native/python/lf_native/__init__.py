"""LiteFunctions native core: the routing table, the envelope codec and the NATS protocol codec, compiled from Rust.

Everything public lives in the compiled module `lf_native._native` and is re-exported here; import from
`lf_native`, not from `_native`.
"""

from lf_native._native import (
    ENVELOPE_VERSION,
    EnvelopeError,
    Header,
    MethodNotAllowed,
    NatsParser,
    NatsProtocolError,
    RequestEnvelope,
    ResponseEnvelope,
    RouteNotFound,
    RoutingTable,
    __version__,
    build_profile,
    decode_request,
    decode_response,
    encode_connect,
    encode_hpub,
    encode_inbox_pub,
    encode_pub,
    encode_request,
    encode_response,
    encode_sub,
    encode_unsub,
    parse_nats_headers,
)

__all__ = [
    "ENVELOPE_VERSION",
    "EnvelopeError",
    "Header",
    "MethodNotAllowed",
    "NatsParser",
    "NatsProtocolError",
    "RequestEnvelope",
    "ResponseEnvelope",
    "RouteNotFound",
    "RoutingTable",
    "__version__",
    "build_profile",
    "decode_request",
    "decode_response",
    "encode_connect",
    "encode_hpub",
    "encode_inbox_pub",
    "encode_pub",
    "encode_request",
    "encode_response",
    "encode_sub",
    "encode_unsub",
    "parse_nats_headers",
]
