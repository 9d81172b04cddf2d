"""Callbacks delivered by the dispatcher's `Callbacks` to real local receivers, outcomes in LF_RESULTS on a real
nats-server: deadlines that hold against a stalled resolver and a silent or trickling receiver, the SSRF guard,
https with certificate checks for the URL's name, CloudEvents to a sink, and the receiver example verifying."""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from callback_harness import Behaviour, ReceiverServer, Results, answer, never_answer, trickle
from cloudevents.core.bindings.http import HTTPMessage, from_binary_event
from lf_core.asynccalls import streams as js
from lf_core.callbackkeys import KeyRing, rotate
from lf_dispatcher.callbacks import Callbacks, CallbackSettings
from lf_dispatcher.signing import sign, verify

from tests.harness.processes import clean_environ, stop_process

pytestmark = pytest.mark.integration

Factory = Callable[[Behaviour], ReceiverServer]
EXAMPLE = Path(__file__).parents[3] / "docs" / "examples" / "callback_receiver.py"


def final(call_id: str | None = None, **fields: object) -> js.CallRecord:
    values: dict[str, object] = {
        "call_id": call_id or uuid.uuid4().hex[:24], "namespace": "default", "function": "fn",
        "status": "succeeded", "attempts": 1, "submitted_at": time.time() - 1, "updated_at": time.time(),
        "result": js.CallResult(status=200, headers=[("content-type", "text/plain")], body=b"result"),
        "callback": "pending",
    }  # fmt: skip
    return js.CallRecord(**{**values, **fields})  # type: ignore[arg-type]


async def settled(results: Results, call_id: str, field: str = "callback", timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = str(getattr(await results.get(call_id), field))
        if value != "pending":
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"{call_id}'s {field} still pending after {timeout} s")


def settings(**values: object) -> CallbackSettings:
    base: dict[str, object] = {"allow_private": True, "timeout_s": 2.0, "attempts": 2, "backoff_s": 0.05}
    return CallbackSettings(**{**base, **values})  # type: ignore[arg-type]


async def test_a_callback_is_signed_delivered_and_recorded(
    results: Results, receiver_factory: Factory, tmp_path: Path
) -> None:
    receiver = receiver_factory(answer(204))
    record = final()
    await results.store(record)
    ring = KeyRing(tmp_path / "keys")
    callbacks = Callbacks(results.request, ring, settings())
    callbacks.deliver(record, receiver.url, result_ttl_s=600)
    assert await settled(results, record.call_id) == "delivered"
    await callbacks.close(5)
    [(path, headers, body)] = receiver.received.requests
    assert path == "/hook?x=1" and headers["lf-call-id"] == record.call_id
    assert json.loads(body)["callId"] == record.call_id and json.loads(body)["callback"] == "pending"
    assert verify(headers["lf-signature"], body, [k.hmac_key for k in ring.signing_keys("default")], now=time.time())


async def test_a_stalled_resolver_ends_within_the_deadline(
    results: Results, receiver_factory: Factory, tmp_path: Path
) -> None:
    stalled = threading.Event()

    def resolve(host: str, port: int) -> list[str]:
        stalled.wait(60)  # a resolver that never answers (released at the end so the thread can exit)
        return ["127.0.0.1"]

    receiver = receiver_factory(answer(200))
    slow, quick = final(), final()
    await results.store(slow)
    await results.store(quick)
    callbacks = Callbacks(
        results.request, KeyRing(tmp_path / "keys"), settings(timeout_s=0.5, concurrency=1, resolvers=1),
        resolve=resolve,
    )  # fmt: skip
    try:
        started = time.monotonic()
        callbacks.deliver(slow, f"http://hooks.example:{receiver.port}/", result_ttl_s=600)
        callbacks.deliver(quick, receiver.url, result_ttl_s=600)  # one deliverer, the only resolver thread stuck
        assert await settled(results, quick.call_id) == "delivered"
        outcome = await settled(results, slow.call_id)
        elapsed = time.monotonic() - started
        assert outcome == "failed: no answer within 0.5 s (attempt 2)"
        assert elapsed < 2 * 0.5 + 0.05 + 1.0, elapsed  # two deadlines, one backoff, slack for the outcome write
        assert len(receiver.received.requests) == 1
        await callbacks.close(5)
    finally:
        stalled.set()


@pytest.mark.parametrize("behaviour", [never_answer, trickle], ids=["never answers", "trickles its status line"])
async def test_a_receiver_that_holds_on_ends_within_the_deadline(
    results: Results, receiver_factory: Factory, tmp_path: Path, behaviour: Behaviour
) -> None:
    receiver = receiver_factory(behaviour)
    record = final()
    await results.store(record)
    callbacks = Callbacks(results.request, KeyRing(tmp_path / "keys"), settings(timeout_s=0.6, attempts=2))
    started = time.monotonic()
    callbacks.deliver(record, receiver.url, result_ttl_s=600)
    outcome = await settled(results, record.call_id)
    elapsed = time.monotonic() - started
    assert outcome == "failed: no answer within 0.6 s (attempt 2)", outcome
    assert 1.2 <= elapsed < 1.2 + 0.05 + 1.0, elapsed
    assert len(receiver.received.requests) == 2 and callbacks.bytes_held == 0
    await callbacks.close(5)


async def test_a_private_address_is_refused_unless_allowed(
    results: Results, receiver_factory: Factory, tmp_path: Path
) -> None:
    receiver = receiver_factory(answer(200))

    def resolve(host: str, port: int) -> list[str]:
        assert host == "internal.example"
        return ["127.0.0.1"]  # a public-looking name that resolves inside

    urls = [receiver.url, f"http://internal.example:{receiver.port}/", f"http://[::ffff:127.0.0.1]:{receiver.port}/"]
    strict = Callbacks(results.request, KeyRing(tmp_path / "keys"), settings(allow_private=False), resolve=resolve)
    refused = [final() for _ in urls]
    for record, url in zip(refused, urls, strict=True):
        await results.store(record)
        strict.deliver(record, url, result_ttl_s=600)
    outcomes = [await settled(results, r.call_id) for r in refused]
    assert all(o.startswith("failed: refused: callback ") for o in outcomes), outcomes
    assert "127.0.0.1" not in outcomes[1]  # the record never says where an internal name points
    assert receiver.received.requests == [] and strict.counts["attempts"] == 3
    await strict.close(5)

    allowed = Callbacks(results.request, KeyRing(tmp_path / "keys"), settings(allow_private=True), resolve=resolve)
    record = final()
    await results.store(record)
    allowed.deliver(record, f"http://internal.example:{receiver.port}/in", result_ttl_s=600)
    assert await settled(results, record.call_id) == "delivered"
    [(path, headers, _)] = receiver.received.requests
    assert path == "/in" and headers["host"] == f"internal.example:{receiver.port}"  # the name, at the checked address
    await allowed.close(5)


# -- https ----------------------------------------------------------------------------------------------------------


def certificates(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for `name`, signed by it: (ca.pem, cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(1).not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


async def test_https_checks_the_certificate_against_the_urls_name(
    results: Results, receiver_factory: Factory, tmp_path: Path
) -> None:
    ca, cert, key = certificates(tmp_path, "hooks.example")
    receiver = receiver_factory(answer(200))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    receiver.httpd.socket = server_context.wrap_socket(receiver.httpd.socket, server_side=True)
    trusting = ssl.create_default_context(cafile=str(ca))

    def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    cases = [
        (f"https://hooks.example:{receiver.port}/", trusting, "delivered"),
        (f"https://other.example:{receiver.port}/", trusting, "failed: TLS: "),  # the certificate names another host
        (f"https://hooks.example:{receiver.port}/", None, "failed: TLS: "),  # the system's CAs don't know ours
    ]
    for url, context, outcome in cases:
        record = final()
        await results.store(record)
        callbacks = Callbacks(
            results.request, KeyRing(tmp_path / "keys"), settings(attempts=1), resolve=resolve, ssl_context=context
        )
        callbacks.deliver(record, url, result_ttl_s=600)
        got = await settled(results, record.call_id)
        assert got.startswith(outcome), (url, got)
        await callbacks.close(5)
    assert len(receiver.received.requests) == 1


# -- CloudEvents to a sink ------------------------------------------------------------------------------------------


async def test_a_sink_gets_a_cloudevent_the_sdk_parses_back(
    results: Results, receiver_factory: Factory, tmp_path: Path
) -> None:
    receiver = receiver_factory(answer(202))
    record = final(
        callback="", sink="pending",
        result=js.CallResult(status=200, headers=[("Content-Type", "application/json")], body=b'{"total": 42}'),
    )  # fmt: skip
    await results.store(record)
    ring = KeyRing(tmp_path / "keys")
    callbacks = Callbacks(results.request, ring, settings())
    callbacks.deliver_event(record, receiver.url, result_ttl_s=600)
    assert await settled(results, record.call_id, "sink") == "delivered"
    await callbacks.close(5)
    [(_, headers, body)] = receiver.received.requests
    event = from_binary_event(HTTPMessage(headers=headers, body=body))
    assert event.get_id() == record.call_id and event.get_type() == "dev.litefunctions.call.succeeded"
    assert event.get_source() == "/litefunctions/default/fn" and event.get_subject() == record.call_id
    assert event.get_data() == {"total": 42} and event.get_datacontenttype() == "application/json"
    assert verify(headers["lf-signature"], body, [k.hmac_key for k in ring.signing_keys("default")], now=time.time())


# -- the receiver example -------------------------------------------------------------------------------------------


def start_example(secrets: list[str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--port", "0"], stdout=subprocess.PIPE, text=True,
        env=clean_environ(LF_CALLBACK_SECRETS=",".join(secrets)),
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()  # "listening on http://127.0.0.1:PORT/", or "" if it died
    if not line.startswith("listening on "):
        stop_process(process)
        raise AssertionError(f"the receiver example did not start: {line!r}")
    return process, line.removeprefix("listening on ").strip()


async def test_the_receiver_example_accepts_signed_callbacks_and_refuses_tampered_ones(
    results: Results, tmp_path: Path
) -> None:
    ring = KeyRing(tmp_path / "keys")
    [old] = ring.signing_keys("default")
    process, url = start_example([old.secret])  # a receiver that knows only the key from before the rotation
    try:
        callbacks = Callbacks(results.request, ring, settings(attempts=1))
        record = final()
        await results.store(record)
        callbacks.deliver(record, f"{url}hook", result_ttl_s=600)
        assert await settled(results, record.call_id) == "delivered"

        rotate(tmp_path / "keys" / "default.json", overlap_s=3600)  # the overlap: both keys sign
        during = final()
        await results.store(during)
        callbacks.deliver(during, f"{url}hook", result_ttl_s=600)
        assert await settled(results, during.call_id) == "delivered"
        await callbacks.close(5)

        body = b'{"callId":"x","status":"succeeded"}'
        now = int(time.time())
        signed = {"Lf-Signature": sign(body, [old.hmac_key], now), "Lf-Call-Id": "x"}
        async with httpx.AsyncClient() as client:
            assert (await client.post(url, content=body, headers=signed)).status_code == 200
            tampered = body.replace(b"succeeded", b"dead")
            assert (await client.post(url, content=tampered, headers=signed)).status_code == 401
            stale = {"Lf-Signature": sign(body, [old.hmac_key], now - 600)}
            assert (await client.post(url, content=body, headers=stale)).status_code == 401
            assert (await client.post(url, content=body)).status_code == 401
    finally:
        stop_process(process)
    assert process.stdout is not None
    with process.stdout:
        accepted = [json.loads(line) for line in process.stdout.read().splitlines() if line.startswith("{")]
    assert [a["callId"] for a in accepted] == [record.call_id, during.call_id, "x"]


STUCK = """
import asyncio, sys, threading
from pathlib import Path
from lf_core.asynccalls import streams as js
from lf_core.callbackkeys import KeyRing
from lf_dispatcher.callbacks import Callbacks, CallbackSettings

async def no_record(subject, payload, headers, timeout):
    return b'{"error":{"code":404,"err_code":10037,"description":"no message found"}}'

def stuck(host, port):
    threading.Event().wait()  # never returns

async def main():
    settings = CallbackSettings(timeout_s=0.2, attempts=1)
    callbacks = Callbacks(no_record, KeyRing(Path(sys.argv[1])), settings, resolve=stuck)
    record = js.CallRecord(call_id="c", namespace="default", function="f", status="succeeded")
    callbacks.deliver(record, "http://stuck.example/", result_ttl_s=60)
    while not callbacks.counts["failed"]:
        await asyncio.sleep(0.01)
    await callbacks.close(1)

asyncio.run(main())
print("closed", flush=True)
"""


def test_a_lookup_that_never_returns_does_not_hold_the_process_at_exit(tmp_path: Path) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", STUCK, str(tmp_path / "keys")], capture_output=True, text=True, timeout=30,
        env=clean_environ(),
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "closed", done.stderr
    assert time.monotonic() - started < 10
