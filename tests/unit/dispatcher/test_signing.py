"""Callback signatures (lf_dispatcher.signing) and the receiver example's check of them (docs/examples)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from lf_core import callbackkeys
from lf_dispatcher.signing import BadSignature, digest, parse, sign, verify

OLD = b"o" * 64
NEW = b"n" * 64
BODY = b'{"callId":"abc","status":"succeeded"}'
NOW = 1_765_000_000


def receiver() -> ModuleType:
    path = Path(__file__).parents[3] / "docs" / "examples" / "callback_receiver.py"
    spec = importlib.util.spec_from_file_location("callback_receiver", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("callback_receiver", module)
    spec.loader.exec_module(module)
    return module


def test_the_header_is_documented_form() -> None:
    header = sign(BODY, [NEW], NOW)
    assert header == f"t={NOW},v1={digest(NEW, NOW, BODY)}"
    assert parse(header) == (NOW, [digest(NEW, NOW, BODY)])
    import hashlib
    import hmac

    assert digest(NEW, NOW, BODY) == hmac.new(NEW, f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()


def test_a_signed_body_verifies() -> None:
    assert verify(sign(BODY, [NEW], NOW), BODY, [NEW], now=NOW + 10) == NOW


@pytest.mark.parametrize(
    ("header_body", "checked_body", "secrets", "now", "why"),
    [
        (BODY, BODY.replace(b"succeeded", b"dead"), [NEW], NOW, "no signature matches"),
        (BODY, BODY, [b"w" * 64], NOW, "no signature matches"),
        (BODY, BODY, [NEW], NOW + 301, "more than 300 s"),
        (BODY, BODY, [NEW], NOW - 301, "more than 300 s"),
    ],
    ids=["tampered body", "wrong key", "old timestamp", "timestamp from the future"],
)
def test_refused(header_body: bytes, checked_body: bytes, secrets: list[bytes], now: float, why: str) -> None:
    header = sign(header_body, [NEW], NOW)
    with pytest.raises(BadSignature, match=why):
        verify(header, checked_body, secrets, now=now)
    assert not receiver().verify(header, checked_body, secrets, now)


def test_a_timestamp_swapped_into_the_header_is_refused() -> None:
    header = sign(BODY, [NEW], NOW).replace(f"t={NOW}", f"t={NOW + 100}")
    with pytest.raises(BadSignature, match="no signature matches"):
        verify(header, BODY, [NEW], now=NOW + 100)


@pytest.mark.parametrize("header", ["", "v1=abc", f"t={NOW}", "t=soon,v1=abc", f"t={NOW},v2=abc"])
def test_malformed_headers_are_refused(header: str) -> None:
    with pytest.raises(BadSignature):
        verify(header, BODY, [NEW], now=NOW)
    assert not receiver().verify(header, BODY, [NEW], NOW)


def test_during_the_overlap_both_keys_sign_and_either_verifies(tmp_path: Path) -> None:
    path = tmp_path / "default.json"
    callbackkeys.write(path, [callbackkeys.Key("old", OLD.decode(), NOW - 3600)])
    callbackkeys.rotate(path, overlap_s=24 * 3600, now=NOW)
    ring = callbackkeys.KeyRing(tmp_path, create=False)
    during = ring.signing_keys("default", NOW + 60)
    assert len(during) == 2 and during[1].id == "old"
    header = sign(BODY, [k.hmac_key for k in during], NOW + 60)
    assert len(parse(header)[1]) == 2
    for holds in ([OLD], [during[0].hmac_key]):
        assert verify(header, BODY, holds, now=NOW + 60) == NOW + 60
        assert receiver().verify(header, BODY, holds, NOW + 60)


def test_after_the_overlap_only_the_new_key_signs(tmp_path: Path) -> None:
    path = tmp_path / "default.json"
    callbackkeys.write(path, [callbackkeys.Key("old", OLD.decode(), NOW - 3600)])
    fresh, _ = callbackkeys.rotate(path, overlap_s=3600, now=NOW)
    after = callbackkeys.KeyRing(tmp_path, create=False).signing_keys("default", NOW + 3600)
    assert [k.id for k in after] == [fresh.id]
    header = sign(BODY, [k.hmac_key for k in after], NOW + 3600)
    with pytest.raises(BadSignature):
        verify(header, BODY, [OLD], now=NOW + 3600)
    assert verify(header, BODY, [fresh.hmac_key], now=NOW + 3600)


def test_signing_needs_a_key() -> None:
    with pytest.raises(ValueError, match="no key"):
        sign(BODY, [], NOW)
