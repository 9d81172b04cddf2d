"""Async calls on `lf dev` as a user makes them: 202 and a call id, the stored result, idempotency, retries into
the dead letters (the `doomed` test function has a 200 ms backoff in its function.yaml), `lf dlq` and redrive."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LfDev, wait_for

pytestmark = pytest.mark.e2e

HEADERS = {"Content-Type": "application/json", "User-Agent": "e2e-async"}


def submit(dev: LfDev, name: str, rest: str = "", **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{dev.base_url}/async-function/{name}{rest}", timeout=10, **kwargs)


def invocation(dev: LfDev, call_id: str) -> dict[str, Any]:
    response = httpx.get(f"{dev.base_url}/invocations/{call_id}", timeout=5)
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


def wait_status(dev: LfDev, call_id: str, statuses: tuple[str, ...], timeout: float = 30) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def done() -> bool:
        seen.update(invocation(dev, call_id))
        return seen["status"] in statuses

    try:
        wait_for(done, timeout, f"call {call_id} to become {statuses}", interval=0.1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last view: {seen}") from None
    return seen


@pytest.fixture(scope="module")
def dev(lf_dev: LfDev) -> LfDev:
    lf_dev.wait_serving("doomed")
    return lf_dev


def test_202_then_the_stored_result_is_what_a_sync_call_answers(dev: LfDev) -> None:
    payload = {"order": 42, "items": ["a", "b"]}
    response = submit(dev, "echo", "/orders?x=1", json=payload, headers=HEADERS)
    assert response.status_code == 202, response.text
    call_id = response.headers["x-call-id"]
    body = response.json()
    assert body["callId"] == call_id and body["status"] == "queued"
    assert call_id in body["statusUrl"]

    done = wait_status(dev, call_id, ("succeeded",))
    assert done["attempts"] == 1 and done["result"]["status"] == 200
    sync = httpx.post(dev.url("echo", "/orders?x=1"), json=payload, headers=HEADERS, timeout=10)
    assert sync.status_code == 200
    assert json.loads(done["result"]["body"]) == sync.json()


def test_the_same_idempotency_key_gives_the_same_call(dev: LfDev) -> None:
    key = {"Idempotency-Key": f"order-{uuid.uuid4()}", **HEADERS}
    first = submit(dev, "echo", json={"n": 1}, headers=key)
    second = submit(dev, "echo", json={"n": 1}, headers=key)
    assert first.status_code == second.status_code == 202, (first.text, second.text)
    assert first.headers["x-call-id"] == second.headers["x-call-id"]
    assert wait_status(dev, first.headers["x-call-id"], ("succeeded",))["attempts"] == 1
    other = submit(dev, "echo", json={"n": 1}, headers=HEADERS)
    assert other.headers["x-call-id"] != first.headers["x-call-id"]


def test_a_failing_call_retries_into_the_dead_letters_and_redrive_runs_it_again(dev: LfDev, tmp_path: Path) -> None:
    healed = tmp_path / "healed"
    started = time.monotonic()
    response = submit(dev, "doomed", json={"healed_by": str(healed)}, headers=HEADERS)
    assert response.status_code == 202, response.text
    call_id = response.headers["x-call-id"]

    dead = wait_status(dev, call_id, ("dead",))
    elapsed = time.monotonic() - started
    assert dead["attempts"] == 3, dead  # maxAttempts from function.yaml
    assert dead["result"]["status"] == 500
    assert elapsed >= 0.2 + 0.4, f"attempts came faster than the 200 ms doubling backoff: {elapsed:.2f} s"

    listed = json.loads(dev.lf("dlq", "list", "--function", "doomed", "--json").stdout)
    letter = next(x for x in listed if x["call_id"] == call_id)
    assert letter["attempts"] == 3 and letter["function"] == "doomed"
    shown = json.loads(dev.lf("dlq", "show", call_id).stdout)
    assert shown["call_id"] == call_id and shown["error"]

    healed.touch()
    redriven = dev.lf("dlq", "redrive", call_id)
    assert call_id in redriven.stdout.decode()
    done = wait_status(dev, call_id, ("succeeded",))
    assert json.loads(done["result"]["body"]) == {"healed": True}
    assert done["attempts"] == 1  # a redrive starts again from attempt 1


def test_a_non_retryable_answer_is_dead_after_one_attempt(dev: LfDev) -> None:
    response = submit(dev, "echo", content=b"not json", headers={"Content-Type": "text/plain"})  # echo answers 415
    assert response.status_code == 202, response.text
    dead = wait_status(dev, response.headers["x-call-id"], ("dead",))
    assert dead["attempts"] == 1 and dead["result"]["status"] == 415


def test_dlq_purge_empties_a_function_s_dead_letters(dev: LfDev) -> None:
    response = submit(dev, "doomed", json={}, headers=HEADERS)
    wait_status(dev, response.headers["x-call-id"], ("dead",))
    purged = dev.lf("dlq", "purge", "--function", "doomed", "--yes")
    assert "purged" in purged.stdout.decode()
    assert json.loads(dev.lf("dlq", "list", "--function", "doomed", "--json").stdout) == []


def test_curl_sees_the_202(dev: LfDev) -> None:
    out = subprocess.run(
        ["curl", "-sS", "-i", "--max-time", "10", "-X", "POST", "-H", "Content-Type: application/json",
         "-d", '{"hi": 1}', f"{dev.base_url}/async-function/echo"],
        capture_output=True,
        check=True,
    ).stdout.decode()  # fmt: skip
    head, _, body = out.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 202"), head
    call_id = next(line.split(":", 1)[1].strip() for line in head.splitlines() if line.lower().startswith("x-call-id"))
    assert json.loads(body)["callId"] == call_id
    assert wait_status(dev, call_id, ("succeeded",))["result"]["status"] == 200


@pytest.mark.parametrize(
    ("function", "language", "build_s"),
    [("hello-go", "Go", 120), ("hello-rust", "Rust", 300)],
)
def test_an_async_call_to_a_compiled_function_runs_on_its_runtime(
    lf_dev: LfDev, function: str, language: str, build_s: float
) -> None:
    # Every runtime takes async calls through the dispatcher, which invokes them like sync calls.
    lf_dev.wait_serving(function, timeout=build_s)
    response = submit(lf_dev, function, "?name=Async", content=b"{}", headers=HEADERS)
    assert response.status_code == 202, response.text
    done = wait_status(lf_dev, response.headers["x-call-id"], ("succeeded",))
    assert done["attempts"] == 1 and done["result"]["status"] == 200
    assert done["result"]["body"] == f"Hello, Async, from {language}!\n"
