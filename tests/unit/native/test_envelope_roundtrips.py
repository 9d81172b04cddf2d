"""Property tests: whatever the strings, bytes and header lists, decode(encode(x)) gives x back."""

import lf_native
from hypothesis import given
from hypothesis import strategies as st

text = st.text(max_size=40)
header_lists = st.lists(st.tuples(text, text), max_size=8)
u32 = st.integers(min_value=0, max_value=2**32 - 1)


@given(
    call_id=text,
    method=text,
    path=text,
    query=text,
    headers=header_lists,
    body=st.binary(max_size=300),
    budget_ms=u32,
    params=header_lists,
    traceparent=text,
    tracestate=text,
)
def test_request_round_trip(
    call_id: str,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    budget_ms: int,
    params: list[tuple[str, str]],
    traceparent: str,
    tracestate: str,
) -> None:
    data = lf_native.encode_request(
        call_id, method, path, query, headers, body, budget_ms, params, traceparent, tracestate
    )
    req = lf_native.decode_request(data)
    assert (req.call_id, req.method, req.path, req.query) == (call_id, method, path, query)
    assert (req.headers, req.params, req.body, req.budget_ms) == (headers, params, body, budget_ms)
    assert (req.traceparent, req.tracestate) == (traceparent, tracestate)


@given(
    status=st.integers(min_value=0, max_value=2**16 - 1),
    headers=header_lists,
    body=st.binary(max_size=300),
    call_id=text,
    error_kind=st.integers(min_value=0, max_value=255),
    error=text,
    duration_ns=st.integers(min_value=0, max_value=2**64 - 1),
    cold_start=st.booleans(),
)
def test_response_round_trip(
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    call_id: str,
    error_kind: int,
    error: str,
    duration_ns: int,
    cold_start: bool,
) -> None:
    data = lf_native.encode_response(status, headers, body, call_id, error_kind, error, duration_ns, cold_start)
    resp = lf_native.decode_response(data)
    assert (resp.status, resp.headers, resp.body, resp.call_id) == (status, headers, body, call_id)
    assert (resp.error_kind, resp.error, resp.duration_ns, resp.cold_start) == (
        error_kind,
        error,
        duration_ns,
        cold_start,
    )


def test_keyword_defaults() -> None:
    req = lf_native.decode_request(lf_native.encode_request("c", "GET", "/", "", (), b"", 5))
    assert (req.params, req.traceparent, req.tracestate) == ([], "", "")
    resp = lf_native.decode_response(lf_native.encode_response(200, (), b""))
    assert (resp.call_id, resp.error_kind, resp.error, resp.duration_ns, resp.cold_start) == ("", 0, "", 0, False)


def test_decoded_envelopes_are_frozen() -> None:
    req = lf_native.decode_request(lf_native.encode_request("c", "GET", "/", "", (), b"", 5))
    try:
        req.path = "/other"  # type: ignore[misc,unused-ignore]
    except AttributeError:
        return
    raise AssertionError("RequestEnvelope accepted an assignment")
