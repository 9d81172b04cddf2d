"""Inbox tokens up to 2**128 through lf_native (issue 14, item 1): the client draws 96-bit random tokens."""

from __future__ import annotations

import pytest
from lf_native import NatsParser, encode_inbox_pub

INBOX = "_INBOX.abc."


@pytest.mark.parametrize("token", [0, 7, 2**64 - 1, 2**64, 2**96 - 1, 10**38, 2**128 - 1])
def test_a_wide_token_goes_out_and_comes_back_as_the_same_int(token: int) -> None:
    wire = encode_inbox_pub("s", INBOX, token, b"q")
    assert wire == f"PUB s {INBOX}{token} 1\r\nq\r\n".encode()
    [(kind, _, key, _, payload, _, _)] = NatsParser(INBOX).feed(f"MSG {INBOX}{token} 1 1\r\na\r\n".encode())
    assert (kind, key, payload) == (NatsParser.REPLY, token, b"a")


@pytest.mark.parametrize("tail", [str(2**128), "1" * 40, "12a", "-1", ""])
def test_what_is_not_a_token_is_an_ordinary_message(tail: str) -> None:
    [(kind, _, key, *_)] = NatsParser(INBOX).feed(f"MSG {INBOX}{tail} 1 0\r\n\r\n".encode())
    assert (kind, key) == (NatsParser.MSG, f"{INBOX}{tail}")


def test_a_token_over_128_bits_is_refused() -> None:
    with pytest.raises(OverflowError):
        encode_inbox_pub("s", INBOX, 2**128, b"")
