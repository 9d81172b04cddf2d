"""Callback signatures (docs/operations.md, "Signed callbacks"). Pure functions; the keys come from
`lf_core.callbackkeys`.

Every callback and CloudEvent the dispatcher sends carries

    Lf-Signature: t=1765000000,v1=<hex>[,v1=<hex>]
    Lf-Call-Id: <call id>

`t` is the time of sending (Unix seconds); each `v1` is HMAC-SHA256, keyed with one signing key's secret (its
ASCII bytes), over `{t}.{body}` (the decimal timestamp, a dot, the body's bytes), hex-encoded. There is one `v1`
per key that signs at that moment: two during a rotation's overlap, so a receiver holding either key verifies.
A receiver recomputes the HMAC with its key, compares in constant time against every `v1`, and refuses a `t`
further than its tolerance (5 minutes here) from its clock, which bounds replays. The runnable receiver is
docs/examples/callback_receiver.py.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

SIGNATURE_HEADER = "Lf-Signature"
CALL_ID_HEADER = "Lf-Call-Id"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300.0


class BadSignature(ValueError):  # noqa: N818 (a refusal, named for what it refuses)
    """A signature that does not verify; the message says why (for the receiver's log, not its answer)."""


def digest(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, b"%d." % timestamp, hashlib.sha256)
    mac.update(body)
    return mac.hexdigest()


def sign(body: bytes, secrets: Sequence[bytes], timestamp: int) -> str:
    """The `Lf-Signature` value for `body` at `timestamp`, one `v1` per secret (in the order given)."""
    if not secrets:
        raise ValueError("no key to sign with")
    return ",".join([f"t={int(timestamp)}", *(f"{SCHEME}={digest(s, int(timestamp), body)}" for s in secrets)])


def parse(header: str) -> tuple[int, list[str]]:
    """`(t, [v1, ...])` of a header value; unknown schemes are ignored (room for a v2).

    Raises:
        BadSignature: no `t`, a bad `t`, or no `v1`.
    """
    timestamp: int | None = None
    signatures = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if name == "t":
            if not value.isdigit() or len(value) > 12:
                raise BadSignature(f"bad timestamp {value[:20]!r}")
            timestamp = int(value)
        elif name == SCHEME:
            signatures.append(value)
    if timestamp is None:
        raise BadSignature("no timestamp (t=) in the signature header")
    if not signatures:
        raise BadSignature(f"no {SCHEME} signature in the signature header")
    return timestamp, signatures


def verify(
    header: str, body: bytes, secrets: Sequence[bytes], *, now: float, tolerance_s: float = DEFAULT_TOLERANCE_S
) -> int:
    """Check a signature header against the receiver's key(s); return its timestamp.

    Raises:
        BadSignature: malformed, too old or too far in the future, or no `v1` matches any of `secrets`.
    """
    timestamp, signatures = parse(header)
    if abs(now - timestamp) > tolerance_s:
        raise BadSignature(f"timestamp {timestamp} is more than {tolerance_s:g} s from now")
    for secret in secrets:
        expected = digest(secret, timestamp, body)
        if any(hmac.compare_digest(expected, candidate) for candidate in signatures):
            return timestamp
    raise BadSignature("no signature matches")
