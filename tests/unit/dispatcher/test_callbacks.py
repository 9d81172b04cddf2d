"""Callback delivery (lf_dispatcher.callbacks) against scripted local receivers and an in-memory LF_RESULTS: the
byte budget, the capped status line, retries, signing, outcomes by compare-and-set; and the CloudEvent form."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_binary_event
from lf_core.asynccalls import streams as js
from lf_core.callbackkeys import KeyRing
from lf_dispatcher import cloudevents
from lf_dispatcher.callbacks import (
    STATUS_LINE_MAX,
    Callbacks,
    CallbackSettings,
    CallbackSettingsError,
    _head,
    parse_status_line,
)
from lf_dispatcher.signing import verify

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
HANG = b""  # accept, read the request, never answer


class Results:
    """LF_RESULTS in memory, answering the JetStream API calls `lf_core.bus.jetstream` makes."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[bytes, int]] = {}
        self.seq = 0

    async def __call__(self, subject: str, payload: bytes, headers: Sequence[tuple[str, str]], timeout: float) -> bytes:
        if subject == f"$JS.API.STREAM.MSG.GET.KV_{js.RESULTS_BUCKET}":
            key = json.loads(payload)["last_by_subj"].removeprefix(f"$KV.{js.RESULTS_BUCKET}.")
            if key not in self.values:
                return b'{"error":{"code":404,"err_code":10037,"description":"no message found"}}'
            data, seq = self.values[key]
            return json.dumps({"message": {"data": base64.b64encode(data).decode(), "seq": seq}}).encode()
        key = subject.removeprefix(f"$KV.{js.RESULTS_BUCKET}.")
        expected = dict(headers).get("Nats-Expected-Last-Subject-Sequence")
        if expected is not None and int(expected) != self.values.get(key, (b"", 0))[1]:
            return b'{"error":{"code":400,"err_code":10071,"description":"wrong last sequence"}}'
        self.seq += 1
        self.values[key] = (payload, self.seq)
        return json.dumps({"stream": "KV_LF_RESULTS", "seq": self.seq}).encode()

    def store(self, record: js.CallRecord) -> None:
        self.seq += 1
        self.values[record.call_id] = (js.encode_record(record), self.seq)

    def record(self, call_id: str) -> js.CallRecord:
        return js.decode_record(self.values[call_id][0])


class Receiver:
    """A local HTTP/1.1 server answering each request with the next scripted answer (the last one repeats)."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.server: asyncio.Server | None = None
        self.hanging: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[1:]
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
        body = await reader.readexactly(int(headers.get("content-length", 0)))
        answer = self.answers[min(len(self.requests), len(self.answers) - 1)]
        self.requests.append((headers, body))
        if answer == HANG:
            self.hanging.append(writer)
            return
        writer.write(answer)
        await writer.drain()
        writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook?x=1"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver([OK])
    r.server = await asyncio.start_server(r.handle, "127.0.0.1", 0)
    yield r
    for writer in r.hanging:
        writer.close()
    r.server.close()


def record(call_id: str = "c1", body: bytes = b"hello", **fields: object) -> js.CallRecord:
    result = js.CallResult(status=200, headers=[("content-type", "text/plain")], body=body)
    values: dict[str, object] = {
        "call_id": call_id, "namespace": "default", "function": "fn", "status": "succeeded", "attempts": 1,
        "submitted_at": time.time() - 1, "updated_at": time.time(), "result": result, "callback": "pending",
    }  # fmt: skip
    return js.CallRecord(**{**values, **fields})  # type: ignore[arg-type]


def callbacks(results: Results, tmp_path: Path, **settings: object) -> Callbacks:
    base: dict[str, object] = {"allow_private": True, "timeout_s": 2.0, "attempts": 3, "backoff_s": 0.01}
    return Callbacks(results, KeyRing(tmp_path / "keys"), CallbackSettings(**{**base, **settings}))  # type: ignore[arg-type]


async def until(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


# -- settings -------------------------------------------------------------------------------------------------------


def test_settings_defaults_and_variables() -> None:
    assert CallbackSettings.from_env({}) == CallbackSettings()
    s = CallbackSettings.from_env(
        {
            "LF_CALLBACK_KEYS_DIR": "/keys", "LF_CALLBACK_ALLOW_PRIVATE": "true", "LF_CALLBACK_TIMEOUT": "3s",
            "LF_CALLBACK_ATTEMPTS": "2", "LF_CALLBACK_BACKOFF": "250ms", "LF_CALLBACK_CONCURRENCY": "8",
            "LF_CALLBACK_BUDGET": "1Mi", "LF_CALLBACK_RESOLVERS": "2", "LF_CALLBACK_NAMESPACE_CONCURRENCY": "3",
            "LF_CALLBACK_NAMESPACE_BUDGET": "64Ki",
        }
    )  # fmt: skip
    assert s == CallbackSettings(Path("/keys"), True, 3.0, 2, 0.25, 8, 1 << 20, 2, 3, 64 << 10)


@pytest.mark.parametrize(
    "env",
    [
        {"LF_CALLBACK_TIMEOUT": "soon"}, {"LF_CALLBACK_ATTEMPTS": "0"}, {"LF_CALLBACK_BUDGET": "lots"},
        {"LF_CALLBACK_ALLOW_PRIVATE": "yes"}, {"LF_CALLBACK_CONCURRENCY": "-1"},
        {"LF_CALLBACK_NAMESPACE_BUDGET": "1x"}, {"LF_CALLBACK_NAMESPACE_CONCURRENCY": "0"},
    ],
)  # fmt: skip
def test_bad_settings_name_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(CallbackSettingsError, match=next(iter(env))):
        CallbackSettings.from_env(env)


# -- delivery -------------------------------------------------------------------------------------------------------


async def test_a_callback_is_signed_delivered_and_recorded(receiver: Receiver, tmp_path: Path) -> None:
    results = Results()
    rec = record()
    results.store(rec)
    cb = callbacks(results, tmp_path)
    cb.deliver(rec, receiver.url, result_ttl_s=60)
    await cb.close(5)
    assert results.record("c1").callback == "delivered" and cb.bytes_held == 0
    [(headers, body)] = receiver.requests
    assert json.loads(body) == js.record_view(rec)
    assert headers["lf-call-id"] == headers["x-call-id"] == "c1" and headers["content-type"] == "application/json"
    assert headers["user-agent"] == "litefunctions-callback" and headers["host"].startswith("127.0.0.1:")
    secrets = [k.hmac_key for k in KeyRing(tmp_path / "keys").signing_keys("default")]
    assert verify(headers["lf-signature"], body, secrets, now=time.time())


async def test_retries_with_backoff_then_delivered(receiver: Receiver, tmp_path: Path) -> None:
    receiver.answers = [b"HTTP/1.1 503 Busy\r\n\r\n", b"HTTP/1.0 429 Slow down\r\n\r\n", OK]
    results = Results()
    results.store(record())
    cb = callbacks(results, tmp_path)
    cb.deliver(record(), receiver.url, result_ttl_s=60)
    await until(lambda: results.record("c1").callback == "delivered")
    assert len(receiver.requests) == 3 and cb.counts["retries"] == 2
    stamps = {h["lf-signature"] for h, _ in receiver.requests}
    assert len(stamps) >= 1  # each attempt is signed when it is sent
    await cb.close(1)


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "failed: status 400"),
        (b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\n\r\n", "failed: status 302"),
        (b"SSH-2.0-OpenSSH\r\n", "failed: not an HTTP/1.x status line: b'SSH-2.0-OpenSSH\\r\\n' (attempt 3)"),
        (b"HTTP/1.1 500 Oops\r\n\r\n", "failed: status 500 (attempt 3)"),
    ],
)
async def test_what_fails_and_how_often(receiver: Receiver, tmp_path: Path, answer: bytes, outcome: str) -> None:
    receiver.answers = [answer]
    results = Results()
    results.store(record())
    cb = callbacks(results, tmp_path)
    cb.deliver(record(), receiver.url, result_ttl_s=60)
    await until(lambda: results.record("c1").callback != "pending")
    assert results.record("c1").callback == outcome
    assert len(receiver.requests) == (3 if "attempt 3" in outcome else 1)  # 4xx and redirects are final
    await cb.close(1)


async def test_the_status_line_is_read_capped(receiver: Receiver, tmp_path: Path) -> None:
    fits = b"HTTP/1.1 200 " + b"o" * (STATUS_LINE_MAX - 15) + b"\r\n\r\n"
    receiver.answers = [fits, b"HTTP/1.1 200 " + b"o" * 4 * STATUS_LINE_MAX + b"\r\n\r\n"]
    results = Results()
    results.store(record("fits"))
    results.store(record("long"))
    cb = callbacks(results, tmp_path, attempts=1)
    cb.deliver(record("fits"), receiver.url, result_ttl_s=60)
    await until(lambda: results.record("fits").callback != "pending")
    cb.deliver(record("long"), receiver.url, result_ttl_s=60)
    await cb.close(5)
    assert results.record("fits").callback == "delivered"
    assert results.record("long").callback == f"failed: status line longer than {STATUS_LINE_MAX} bytes (attempt 1)"


async def test_the_byte_budget_refuses_what_does_not_fit_without_waiting(receiver: Receiver, tmp_path: Path) -> None:
    receiver.answers = [HANG]
    results = Results()
    small, big = record("small", b"s" * 100), record("big", b"b" * 2000)
    results.store(small)
    results.store(big)
    size = len(json.dumps(js.record_view(small), separators=(",", ":")))
    cb = callbacks(results, tmp_path, budget_bytes=size + 1000, timeout_s=30.0)
    started = time.perf_counter()
    cb.deliver(small, receiver.url, result_ttl_s=60)
    cb.deliver(big, receiver.url, result_ttl_s=60)  # over the budget while `small` is held by a silent receiver
    assert time.perf_counter() - started < 0.05
    assert cb.bytes_held == size and cb.counts["budget_full"] == 1
    await until(lambda: results.record("big").callback != "pending")
    assert results.record("big").callback == "failed: callback budget full"
    await until(lambda: len(receiver.requests) == 1)
    await cb.close(0.2)  # `small` is still waiting for its answer: left pending
    assert results.record("small").callback == "pending"


async def test_bytes_are_released_when_a_delivery_ends(receiver: Receiver, tmp_path: Path) -> None:
    receiver.answers = [b"HTTP/1.1 500 No\r\n\r\n", OK]
    results = Results()
    cb = callbacks(results, tmp_path, budget_bytes=4096, backoff_s=0.2)
    cb.deliver(record("a", b"x" * 1000), receiver.url, result_ttl_s=60)
    await until(lambda: cb.counts["retries"] == 1)
    assert cb.bytes_held > 1000  # held while it waits for its retry
    await until(lambda: cb.counts["delivered"] == 1)
    assert cb.bytes_held == 0
    await cb.close(1)


async def test_without_a_signing_key_nothing_is_sent(receiver: Receiver, tmp_path: Path) -> None:
    results = Results()
    results.store(record())
    cb = Callbacks(results, KeyRing(None), CallbackSettings(allow_private=True))
    cb.deliver(record(), receiver.url, result_ttl_s=60)
    await cb.close(5)
    assert results.record("c1").callback == (
        "failed: no signing key for namespace default (LF_CALLBACK_KEYS_DIR is not set)"
    )
    assert receiver.requests == []


async def test_close_tries_waiting_retries_at_once(receiver: Receiver, tmp_path: Path) -> None:
    receiver.answers = [b"HTTP/1.1 503 No\r\n\r\n", OK]
    results = Results()
    results.store(record())
    cb = callbacks(results, tmp_path, backoff_s=600.0)
    cb.deliver(record(), receiver.url, result_ttl_s=60)
    await until(lambda: cb.counts["retries"] == 1)
    started = time.monotonic()
    await cb.close(5)
    assert time.monotonic() - started < 2 and results.record("c1").callback == "delivered"


async def test_an_outcome_never_lands_on_a_redriven_record(receiver: Receiver, tmp_path: Path) -> None:
    results = Results()
    results.store(record(redrives=1, status="running", callback="pending"))  # redriven since: not ours to mark
    cb = callbacks(results, tmp_path)
    cb.deliver(record(), receiver.url, result_ttl_s=60)
    await cb.close(5)
    assert len(receiver.requests) == 1 and results.record("c1").callback == "pending"


async def test_a_refused_url_is_recorded_without_attempting(tmp_path: Path) -> None:
    results = Results()
    results.store(record())
    cb = callbacks(results, tmp_path, allow_private=False)
    cb.deliver(record(), "http://127.0.0.1:9/hook", result_ttl_s=60)
    await cb.close(5)
    assert results.record("c1").callback == "failed: refused: callback URL points to a non-public address (127.0.0.1)"
    assert cb.counts["attempts"] == 1 and cb.counts["retries"] == 0


# -- the wire -------------------------------------------------------------------------------------------------------


def test_a_header_that_could_split_the_request_is_dropped() -> None:
    head = _head("example.com", 443, "/p", [("Content-Type", "text/plain\r\nX-Evil: 1"), ("ce-id", "a")], 5)
    assert b"X-Evil" not in head and b"ce-id: a\r\n" in head
    assert head.startswith(b"POST /p HTTP/1.1\r\nHost: example.com\r\n")
    assert _head("::1", 8080, "/", [], 0).split(b"\r\n")[1] == b"Host: [::1]:8080"


@pytest.mark.parametrize(
    ("line", "status"), [(b"HTTP/1.1 204 No Content\r\n", 204), (b"HTTP/1.0 500\r\n", 500), (b"HTTP/1.1 20\r\n", None)]
)
def test_status_lines(line: bytes, status: int | None) -> None:
    if status is None:
        with pytest.raises(ValueError, match="status line"):
            parse_status_line(line)
    else:
        assert parse_status_line(line) == status


# -- CloudEvents ----------------------------------------------------------------------------------------------------


def test_a_succeeded_record_is_a_binary_cloudevent_the_sdk_reads_back() -> None:
    rec = record(body=b'{"ok":true}', updated_at=1_765_000_000.5)
    rec.result = js.CallResult(status=201, headers=[("Content-Type", "application/json")], body=b'{"ok":true}')
    headers, body = cloudevents.binary(rec)
    named = dict(headers)
    assert named["ce-specversion"] == "1.0" and named["ce-id"] == "c1" and named["ce-subject"] == "c1"
    assert named["ce-source"] == "/litefunctions/default/fn" and named["Content-Type"] == "application/json"
    assert named["ce-type"] == "dev.litefunctions.call.succeeded" and named["ce-time"].startswith("2025-12-06T05:46:40")
    assert named["ce-lfstatus"] == "201" and body == b'{"ok":true}'
    event = from_binary_event(HTTPMessage(headers=dict(headers), body=body))
    assert event.get_id() == "c1" and event.get_type() == "dev.litefunctions.call.succeeded"
    assert event.get_data() == {"ok": True}


def test_a_dead_record_without_a_result_carries_its_error() -> None:
    rec = record(status="dead", last_error="maxAge exceeded", result=None, redrives=2)
    headers, body = cloudevents.binary(rec)
    named = dict(headers)
    assert named["ce-type"] == "dev.litefunctions.call.dead" and named["ce-id"] == "c1-r2"
    assert named["Content-Type"] == "application/json"
    assert json.loads(body) == {"callId": "c1", "error": "maxAge exceeded"}
    assert cloudevents.event_of(record(result=js.CallResult(status=200, body=b"\x00\x01"))).get_data() == b"\x00\x01"
    with pytest.raises(ValueError, match="only succeeded and dead"):
        cloudevents.event_of(record(status="running"))


async def test_a_sink_gets_a_signed_cloudevent_and_the_outcome_goes_to_sink(receiver: Receiver, tmp_path: Path) -> None:
    results = Results()
    rec = record(callback="", sink="pending")
    results.store(rec)
    cb = callbacks(results, tmp_path)
    cb.deliver_event(rec, receiver.url, result_ttl_s=60)
    await cb.close(5)
    stored = results.record("c1")
    assert stored.sink == "delivered" and stored.callback == ""
    [(headers, body)] = receiver.requests
    assert headers["ce-type"] == "dev.litefunctions.call.succeeded" and body == b"hello"
    secrets = [k.hmac_key for k in KeyRing(tmp_path / "keys").signing_keys("default")]
    assert verify(headers["lf-signature"], body, secrets, now=time.time())


async def test_a_receivers_name_is_looked_up_once_for_many_callbacks(receiver: Receiver, tmp_path: Path) -> None:
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    results = Results()
    cb = Callbacks(
        results, KeyRing(tmp_path / "keys"), CallbackSettings(allow_private=True, attempts=1), resolve=resolve
    )
    url = receiver.url.replace("127.0.0.1", "hooks.example")
    for i in range(3):
        cb.deliver(record(f"c{i}"), url, result_ttl_s=60)
    await cb.close(5)
    assert cb.counts["delivered"] == 3 and lookups == ["hooks.example"]
    assert all(h["host"].startswith("hooks.example:") for h, _ in receiver.requests)


async def test_one_namespaces_silent_receiver_holds_only_its_share(tmp_path: Path) -> None:
    silent, quick = Receiver([HANG]), Receiver([OK])
    silent.server = await asyncio.start_server(silent.handle, "127.0.0.1", 0)
    quick.server = await asyncio.start_server(quick.handle, "127.0.0.1", 0)
    try:
        results = Results()
        cb = callbacks(results, tmp_path, concurrency=3, namespace_concurrency=2, timeout_s=30.0, attempts=1)
        for i in range(4):
            cb.deliver(record(f"noisy{i}", namespace="noisy"), silent.url, result_ttl_s=60)
        cb.deliver(record("calm", namespace="calm"), quick.url, result_ttl_s=60)
        await until(lambda: cb.counts["delivered"] == 1)  # while two deliverers wait on the silent receiver
        await asyncio.sleep(0.1)
        assert len(silent.requests) == 2 and len(quick.requests) == 1
        assert cb.counts["budget_full"] == 0
    finally:
        for r in (silent, quick):
            for writer in r.hanging:
                writer.close()
            assert r.server is not None
            r.server.close()
    await cb.close(0.1)


async def test_one_namespace_fills_only_its_share_of_the_budget(tmp_path: Path) -> None:
    results = Results()
    noisy = [record(f"n{i}", namespace="noisy", submitted_at=1.0, updated_at=2.0) for i in range(3)]
    calm = record("c0", namespace="calm", submitted_at=1.0, updated_at=2.0)
    for r in [*noisy, calm]:
        results.store(r)
    size = len(json.dumps(js.record_view(noisy[0]), separators=(",", ":")))
    cb = callbacks(results, tmp_path, budget_bytes=100 * size, namespace_budget_bytes=2 * size + 10, backoff_s=5.0)
    for r in [*noisy, calm]:
        cb.deliver(r, "http://127.0.0.1:9/", result_ttl_s=60)  # nothing listens: held through the retries
    assert cb.counts["budget_full"] == 1
    await until(lambda: results.record("n2").callback != "pending")
    assert results.record("n2").callback == "failed: callback budget full"
    assert results.record("c0").callback == "pending" and results.record("n1").callback == "pending"
    await cb.close(0.1)


async def test_after_close_nothing_starts_again(receiver: Receiver, tmp_path: Path) -> None:
    results = Results()
    cb = callbacks(results, tmp_path)
    cb.deliver(record("before"), receiver.url, result_ttl_s=60)
    await cb.close(5)
    tasks = len(asyncio.all_tasks())
    cb.deliver(record("after"), receiver.url, result_ttl_s=60)
    await asyncio.sleep(0.05)
    assert len(asyncio.all_tasks()) == tasks and len(receiver.requests) == 1
    assert cb.counts["outcomes_dropped"] == 1
