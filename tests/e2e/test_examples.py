"""Every example through the real data plane: HTTP → ingestor → NATS → Python runtime → back."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from tests.e2e.conftest import LfDev, wait_for

pytestmark = pytest.mark.e2e


def assert_platform_headers(response: httpx.Response) -> None:
    assert response.headers["x-call-id"]
    assert float(response.headers["x-duration-seconds"]) >= 0


def test_hello_answers_text_with_the_env_of_its_manifest(lf_dev: LfDev) -> None:
    response = httpx.get(lf_dev.url("hello"))
    assert response.status_code == 200
    assert response.text == "Hello, world!\n"
    assert response.headers["content-type"].startswith("text/plain")
    assert_platform_headers(response)


def test_echo_round_trips_json_path_and_query(lf_dev: LfDev) -> None:
    response = httpx.post(
        lf_dev.url("echo", "/orders/42?expand=items&x=%C3%A9"),
        json={"qty": 3, "name": "café"},
        headers={"user-agent": "e2e"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {
        "method": "POST",
        "path": "/orders/42",
        "query": "expand=items&x=%C3%A9",
        "json": {"qty": 3, "name": "café"},
        "user_agent": "e2e",
    }


def test_echo_refuses_non_json_with_its_own_status(lf_dev: LfDev) -> None:
    response = httpx.post(lf_dev.url("echo"), content=b"plain", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert "JSON" in response.json()["error"]


def test_call_ids_differ_per_call(lf_dev: LfDev) -> None:
    ids = {httpx.get(lf_dev.url("hello")).headers["x-call-id"] for _ in range(20)}
    assert len(ids) == 20


def test_a_raising_handler_is_a_500_from_the_function_layer(lf_dev: LfDev) -> None:
    response = httpx.get(lf_dev.url("fail", "/widgets"))
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["layer"] == "function"
    # the exception's text is for the function's owner (its log), not the caller (issue 14, item 10)
    assert error["message"].startswith("the function raised an exception") and "InventoryError" not in response.text
    call_id = response.headers["x-call-id"]
    wait_for(
        lambda: any(call_id in line and "no stock for /widgets" in line for line in lf_dev.output().splitlines()),
        30,
        "the exception's text in lf dev's output",
    )
    assert_platform_headers(response)
    assert httpx.get(lf_dev.url("hello")).status_code == 200


def test_slow_within_its_timeout_succeeds(lf_dev: LfDev) -> None:
    response = httpx.get(lf_dev.url("slow", "?seconds=0.2"))
    assert response.status_code == 200
    assert response.json() == {"slept": 0.2}


def test_slow_past_its_timeout_is_a_504_from_the_runtime_in_time(lf_dev: LfDev) -> None:
    response = httpx.get(lf_dev.url("slow", "?seconds=10"), timeout=15)
    assert response.status_code == 504
    assert response.json()["error"]["layer"] == "runtime"
    assert 1.5 <= response.elapsed.total_seconds() < 3.0  # the manifest's timeout is 2s
    assert httpx.get(lf_dev.url("slow", "?seconds=0")).status_code == 200


def test_secrets_from_local_files_reach_the_function(lf_dev: LfDev) -> None:
    assert httpx.get(lf_dev.url("gate")).json()["secret"] == "t0ken"


def test_curl_sees_the_same(lf_dev: LfDev) -> None:
    result = subprocess.run(
        ["curl", "-sS", "-i", "--max-time", "10", lf_dev.url("hello")], capture_output=True, check=True
    )
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"x-call-id:" in head.lower()
    assert body == b"Hello, world!\n"


def test_a_functions_requirements_live_in_its_own_venv(lf_dev: LfDev) -> None:
    answer = httpx.get(lf_dev.url("withdeps")).json()
    assert answer["tabulate"] == "0.9.0"
    assert answer["from"].startswith(str(lf_dev.state_dir / "venvs" / "default.withdeps"))
    with pytest.raises(ImportError):
        __import__("tabulate")  # not in the platform's own environment
