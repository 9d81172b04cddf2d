"""What the ingestor refuses before any function runs: unknown and invalid names, oversize bodies."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.e2e.conftest import LfDev

pytestmark = pytest.mark.e2e


def test_unknown_function_is_404(lf_dev: LfDev) -> None:
    response = httpx.get(lf_dev.url("nosuchfunction"))
    assert response.status_code == 404
    assert response.json()["error"]["code"]
    assert "nosuchfunction" in response.json()["error"]["message"]


@pytest.mark.parametrize("name", ["Hello", "a*b", "a>", "a%20b", "x" * 300, "hello.Bad_NS", "-x"])
def test_invalid_names_are_refused_with_400(lf_dev: LfDev, name: str) -> None:
    response = httpx.get(lf_dev.url(name))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["layer"] == "ingestor"


def test_namespace_in_the_url_is_honoured(lf_dev: LfDev) -> None:
    assert httpx.get(lf_dev.url("hello.default")).status_code == 200
    assert httpx.get(lf_dev.url("hello.other")).status_code == 404


def test_declared_oversize_body_is_refused_without_sending_it(lf_dev: LfDev) -> None:
    # echo's requestBody limit is 1Mi: announce 2 MiB and send none of it. A 413 must come back anyway.
    with socket.create_connection(("127.0.0.1", lf_dev.port), timeout=10) as sock:
        sock.sendall(
            b"POST /function/echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2097152\r\n\r\n"
        )
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"1048576" in answer or b"1 MiB" in answer or b"limit" in answer.lower()


def test_headers_over_the_limit_are_refused_with_431(lf_dev: LfDev) -> None:
    flood = {f"x-flood-{i}": "v" * 1000 for i in range(80)}  # 80 KiB of headers, over the 64 KiB limit
    response = httpx.get(lf_dev.url("hello"), headers=flood)
    assert response.status_code == 431
    assert response.json()["error"]["layer"] == "ingestor"
    assert httpx.get(lf_dev.url("hello")).status_code == 200
