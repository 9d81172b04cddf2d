"""The public surface of `lf_native` is pinned: adding or removing a name is a deliberate change."""

import lf_native


def test_all_is_pinned() -> None:
    assert sorted(lf_native.__all__) == [
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


def test_every_exported_name_exists() -> None:
    for name in lf_native.__all__:
        assert hasattr(lf_native, name), name


def test_build_info() -> None:
    assert lf_native.ENVELOPE_VERSION == 1
    assert lf_native.build_profile in {"release", "debug"}
    assert lf_native.__version__.count(".") == 2


def test_exceptions_have_familiar_bases() -> None:
    assert issubclass(lf_native.RouteNotFound, LookupError)
    assert issubclass(lf_native.MethodNotAllowed, lf_native.RouteNotFound)
    assert issubclass(lf_native.EnvelopeError, ValueError)
    assert issubclass(lf_native.NatsProtocolError, ValueError)
