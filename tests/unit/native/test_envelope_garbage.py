"""Bad bytes raise EnvelopeError with a reason, never crash; bad arguments raise the usual Python errors."""

import lf_native
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lf_native import EnvelopeError

REQUEST = lf_native.encode_request("c1", "GET", "/x", "a=1", [("h", "v")], b"body", 100, [("p", "1")], "tp", "ts")
RESPONSE = lf_native.encode_response(200, [("h", "v")], b"body", "c1", 1, "boom", 5, True)


def decode_any(data: bytes) -> None:
    for decode in (lf_native.decode_request, lf_native.decode_response):
        try:
            decode(data)
        except EnvelopeError:
            pass


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    decode_any(data)
    decode_any(b"LF\x01\x01" + data)
    decode_any(b"LF\x01\x02" + data)


@pytest.mark.parametrize("good", [REQUEST, RESPONSE], ids=["request", "response"])
def test_every_strict_prefix_is_rejected(good: bytes) -> None:
    decode = lf_native.decode_request if good is REQUEST else lf_native.decode_response
    for n in range(len(good)):
        with pytest.raises(EnvelopeError):
            decode(good[:n])


@given(st.data())
def test_byte_flips_never_crash(data: st.DataObject) -> None:
    good = bytearray(data.draw(st.sampled_from([REQUEST, RESPONSE])))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        good[data.draw(st.integers(min_value=0, max_value=len(good) - 1))] ^= data.draw(st.integers(1, 255))
    decode_any(bytes(good))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "truncated"),
        (b"XX\x01\x01" + REQUEST[4:], "bad magic"),
        (b"LF\x02\x01" + REQUEST[4:], "unsupported envelope version 2"),
        (RESPONSE, "wrong envelope kind 2"),
        (REQUEST + b"\x00", "trailing"),
    ],
)
def test_rejections_say_why(data: bytes, match: str) -> None:
    with pytest.raises(EnvelopeError, match=match):
        lf_native.decode_request(data)


def test_invalid_utf8_is_rejected() -> None:
    bad = bytearray(REQUEST)
    bad[16] = 0xFF  # first byte of call_id "c1"
    with pytest.raises(EnvelopeError, match="UTF-8 in call_id"):
        lf_native.decode_request(bytes(bad))


@pytest.mark.parametrize(
    "headers",
    [[("only-name",)], [("a", 1)], ["ab"], [["a", "b"]]],
    ids=["short-tuple", "non-str", "str", "list"],
)
def test_malformed_headers_raise_type_error(headers: object) -> None:
    with pytest.raises(TypeError, match=r"headers\[0\]"):
        lf_native.encode_request("c", "GET", "/", "", headers, b"", 0)  # type: ignore[arg-type]


def test_out_of_range_numbers_raise_overflow_error() -> None:
    with pytest.raises(OverflowError):
        lf_native.encode_request("c", "GET", "/", "", [], b"", -1)
    with pytest.raises(OverflowError):
        lf_native.encode_response(70_000, [], b"")
