"""The NATS protocol codec from Python: the tuples `NatsParser.feed` hands the client, splits, limits, builders."""

from __future__ import annotations

import pytest
from lf_native import (
    NatsParser,
    NatsProtocolError,
    encode_connect,
    encode_hpub,
    encode_inbox_pub,
    encode_pub,
    encode_sub,
    encode_unsub,
    parse_nats_headers,
)

INBOX = "_INBOX.abc."
P = NatsParser

STREAM = (
    b'INFO {"server_id":"s","max_payload":2048,"headers":true}\r\n'
    b"PING\r\n"
    b"MSG _INBOX.abc.7 1 5\r\nhello\r\n"
    b"HMSG _INBOX.abc.8 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"
    b"MSG other.subject 2 reply.to 3\r\nxyz\r\n"
    b"HMSG _INBOX.abc.x 1 18 20\r\nNATS/1.0\r\nK: v\r\n\r\nok\r\n"
    b"PONG\r\n+OK\r\n-ERR 'Authorization Violation'\r\n"
)

EXPECTED = [
    (P.INFO, 0, '{"server_id":"s","max_payload":2048,"headers":true}', None, None, 0, None),
    (P.PING, 0, None, None, None, 0, None),
    (P.REPLY, 1, 7, None, b"hello", 0, None),
    (P.REPLY, 1, 8, None, b"", 503, b"NATS/1.0 503\r\n\r\n"),
    (P.MSG, 2, "other.subject", "reply.to", b"xyz", 0, None),
    (P.MSG, 1, "_INBOX.abc.x", None, b"ok", 0, b"NATS/1.0\r\nK: v\r\n\r\n"),
    (P.PONG, 0, None, None, None, 0, None),
    (P.OK, 0, None, None, None, 0, None),
    (P.ERR, 0, "Authorization Violation", None, None, 0, None),
]


def test_one_chunk_gives_every_op_as_a_flat_tuple() -> None:
    parser = NatsParser(INBOX)
    assert parser.feed(STREAM) == EXPECTED
    assert parser.max_payload == 2048
    assert parser.buffered == 0


def test_every_split_point_gives_the_same_ops() -> None:
    for at in range(len(STREAM) + 1):
        parser = NatsParser(INBOX)
        assert parser.feed(STREAM[:at]) + parser.feed(STREAM[at:]) == EXPECTED, at


def test_without_an_inbox_every_message_is_msg() -> None:
    [(kind, _, key, *_)] = NatsParser().feed(b"MSG _INBOX.abc.7 1 0\r\n\r\n")
    assert (kind, key) == (P.MSG, "_INBOX.abc.7")


def test_kinds_are_distinct() -> None:
    assert len({P.REPLY, P.MSG, P.PING, P.PONG, P.INFO, P.OK, P.ERR}) == 7


@pytest.mark.parametrize(
    "data",
    [
        b"BOGUS\r\n",
        b"MSG a b 1\r\nx\r\n",
        b"MSG a 1 1\r\nxy\r\n",
        b"HMSG a 1 2 2\r\nab\r\n",
        b"MSG a 1 1048577\r\n",
        b"MSG " + b"a" * 5000,
    ],
    ids=["unknown op", "bad sid", "missing trailer", "short header", "over max_payload", "line too long"],
)
def test_garbage_raises_a_value_error(data: bytes) -> None:
    with pytest.raises(NatsProtocolError):
        NatsParser(INBOX).feed(data)
    assert issubclass(NatsProtocolError, ValueError)


def test_max_control_line_is_configurable() -> None:
    with pytest.raises(NatsProtocolError, match="longer than 16"):
        NatsParser(max_control_line=16).feed(b"MSG a.very.long.subject 1 0\r\n\r\n")


def test_headers_are_parsed_on_demand() -> None:
    assert parse_nats_headers(b"NATS/1.0 408 Request Timeout\r\nA: 1\r\nA: 2\r\n\r\n") == (
        408,
        "Request Timeout",
        [("A", "1"), ("A", "2")],
    )
    with pytest.raises(NatsProtocolError):
        parse_nats_headers(b"garbage")


def test_builders() -> None:
    assert encode_pub("a.b", "", b"hi") == b"PUB a.b 2\r\nhi\r\n"
    assert encode_pub("a.b", "r", b"") == b"PUB a.b r 0\r\n\r\n"
    assert encode_inbox_pub("lf.invoke.default.f", INBOX, 12345, b"xy") == (
        b"PUB lf.invoke.default.f _INBOX.abc.12345 2\r\nxy\r\n"
    )
    assert encode_hpub("s", "", [("K", "v")], b"p") == b"HPUB s 18 19\r\nNATS/1.0\r\nK: v\r\n\r\np\r\n"
    assert encode_sub("_INBOX.abc.*", 1) == b"SUB _INBOX.abc.* 1\r\n"
    assert encode_sub("s", 2, "q") == b"SUB s q 2\r\n"
    assert encode_unsub(1) == b"UNSUB 1\r\n"
    assert encode_unsub(1, 5) == b"UNSUB 1 5\r\n"
    assert encode_connect('{"verbose":false}') == b'CONNECT {"verbose":false}\r\n'


@pytest.mark.parametrize("subject", ["", "a b", "a\r\nPUB x 0", "tab\there"])
def test_builders_refuse_protocol_injection(subject: str) -> None:
    with pytest.raises(NatsProtocolError):
        encode_pub(subject, "", b"")
    with pytest.raises(NatsProtocolError):
        encode_pub("ok", subject or " ", b"")
    with pytest.raises(NatsProtocolError):
        encode_connect("{\r\n}")


def test_a_request_and_its_reply_relayed_by_a_server_parse_back() -> None:
    token = 2**63
    wire = encode_inbox_pub("s", INBOX, token, b"payload")
    [(kind, _, subject, reply, payload, _, _)] = NatsParser(INBOX).feed(b"MSG s 1 " + wire[len(b"PUB s ") :])
    assert (kind, subject, reply, payload) == (P.MSG, "s", f"{INBOX}{token}", b"payload")
    answer = encode_pub(reply, "", b"answer")
    relayed = f"MSG {reply} 1 ".encode() + answer[len(f"PUB {reply} ") :]
    [(kind, sid, key, _, payload, status, _)] = NatsParser(INBOX).feed(relayed)
    assert (kind, sid, key, payload, status) == (P.REPLY, 1, token, b"answer", 0)
