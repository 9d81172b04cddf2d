"""Hostile input and overload against a running `lf dev` (its own platform, short header timeout, small caps).

What a gateway on the internet meets daily: bodies too large, header floods, malformed content, names built to
escape into NATS subjects, slowloris connections, and ten times the load it can carry. Each must get a clear
answer, and the ingestor must keep serving. The same platform serves the cache and rate-limit checks, and
schemathesis runs docs/openapi.yaml against it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest
from nats.aio.msg import Msg

from tests.e2e.conftest import REPO, LfDev, start_lf_dev, stop, wait_for

pytestmark = pytest.mark.e2e

FUNCTIONS = Path(__file__).resolve().parent / "hostile_functions"
HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
MAX_INFLIGHT = 16
MAX_QUEUE = 16


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LfDev]:
    root = tmp_path_factory.mktemp("hostile")
    shutil.copytree(FUNCTIONS, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    work = tmp_path_factory.mktemp("hostile-dev")
    env = {
        "LF_HEADER_READ_TIMEOUT": f"{HEADER_TIMEOUT_S}s",
        "LF_BODY_TIMEOUT": f"{BODY_TIMEOUT_S}s",
        "LF_MAX_INFLIGHT": str(MAX_INFLIGHT),
        "LF_MAX_QUEUE": str(MAX_QUEUE),
        "LF_QUEUE_TIMEOUT": "200ms",
        "LF_FUNCTION_QUEUE": "8",
    }
    dev = start_lf_dev(root, work / ".lf", work / "lf-dev.log", extra_env=env)
    try:
        dev.wait_serving("hostile")
        wait_for(lambda: httpx.get(dev.url("cached"), timeout=5).status_code in (200, 429), 30, "cached")
        yield dev
    finally:
        if stop(dev) != 0:
            print(dev.output())


def nats_url(dev: LfDev) -> str:
    config = (dev.state_dir / "nats" / "nats-server.conf").read_text()
    match = re.search(r'listen:\s*"([^"]+)"', config)
    assert match, config
    return f"nats://{match[1]}"


def raw(dev: LfDev, data: bytes, *, timeout: float = 10.0, send_all: bool = True) -> bytes:
    """Send `data` on a fresh connection and read the answer until the server closes or has answered."""
    with socket.create_connection(("127.0.0.1", dev.port), timeout=timeout) as sock:
        if send_all:
            sock.sendall(data)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def assert_serving(dev: LfDev) -> None:
    assert httpx.get(dev.url("hostile"), timeout=5).text == "ok"


# -- bodies and headers ---------------------------------------------------------------------------------------------


def test_declared_oversized_body_is_413_without_sending_it(dev: LfDev) -> None:
    head = b"POST /function/hostile HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    answer = raw(dev, head + b"Content-Length: 104857600\r\n\r\n{")
    assert status_of(answer) == 413, answer[:300]
    assert b'"layer":"ingestor"' in answer or b"ingestor" in answer


def test_streamed_oversized_body_is_413_as_soon_as_it_passes_the_limit(dev: LfDev) -> None:
    # The limit is 64 KiB: send 80 KiB in chunks, never the final chunk, and the answer must come anyway.
    with socket.create_connection(("127.0.0.1", dev.port), timeout=10) as sock:
        sock.sendall(b"POST /function/hostile HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(20):
            try:
                sock.sendall(b"1000\r\n" + b"x" * 4096 + b"\r\n")
            except OSError:  # answered and closed while we were still sending: what we want
                break
        answer = sock.recv(65536)
    assert status_of(answer) == 413, answer[:300]
    assert_serving(dev)


@pytest.mark.parametrize(
    "headers",
    [
        {f"x-flood-{i}": "v" * 1000 for i in range(80)},  # 80 KiB of values
        {f"x-many-{i}": "v" for i in range(2000)},  # thousands of tiny headers
    ],
    ids=["large", "many"],
)
def test_header_flood_is_431(dev: LfDev, headers: dict[str, str]) -> None:
    head = b"GET /function/hostile HTTP/1.1\r\nHost: x\r\n"
    head += b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
    answer = raw(dev, head + b"\r\n")
    assert status_of(answer) == 431, answer[:300]
    assert_serving(dev)


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/json", b"{not json", 400),
        ("application/json", b"", 400),
        ("application/json", b'{"n": "two"}', 400),
        ("application/json", b'{"m": 1}', 400),
        ("application/json", b"\xff\xfe\x00garbage", 400),
        ("application/json", b"[" * 10000, 400),
        ("text/plain", b'{"n": 1}', 415),
        (None, b"", 415),
    ],
    ids=["syntax", "empty", "type", "missing-field", "binary", "deep", "content-type", "nothing"],
)
def test_malformed_or_missing_content_is_a_4xx_from_the_function(
    dev: LfDev, content_type: str | None, body: bytes, expected: int
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = httpx.post(dev.url("hostile"), content=body, headers=headers, timeout=10)
    assert response.status_code == expected, response.text
    assert httpx.post(dev.url("hostile"), json={"n": 21}, timeout=10).json() == {"double": 42}


def test_bad_content_length_is_400_from_the_ingestor(dev: LfDev) -> None:
    answer = raw(dev, b"POST /function/hostile HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n")
    assert status_of(answer) == 400, answer[:300]


# -- names ----------------------------------------------------------------------------------------------------------

HOSTILE_NAMES = [
    "..", "a..b", "hostile..default", "../hostile", "*", "a*", ">", "a>b", "hostile.>", "hostile.*",
    "a%20b", "%2e%2e", "hostile%2edefault%2ex", "a.b.c", "x" * 300, "hostile." + "y" * 300, "HOSTILE", "a\tb",
    "lf.invoke.default.hostile", "hostile.default.extra",
]  # fmt: skip


async def test_hostile_names_are_400_or_404_and_never_reach_a_subject(dev: LfDev) -> None:
    nc = await nats.connect(nats_url(dev))
    subjects: list[str] = []

    async def spy(msg: Msg) -> None:
        subjects.append(msg.subject)

    try:
        await nc.subscribe(">", cb=spy)
        await nc.flush()
        loop = asyncio.get_running_loop()
        for name in HOSTILE_NAMES:
            for path in (f"/function/{name}", f"/function/{name}/rest", f"/function/{name}?x=1"):
                answer = await loop.run_in_executor(None, raw, dev, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                assert status_of(answer) in (400, 404), (path, answer[:200])
        for line in (b"GET /function/a b HTTP/1.1", b"GET /function/a\x00b HTTP/1.1"):
            answer = await loop.run_in_executor(None, raw, dev, line + b"\r\nHost: x\r\n\r\n")
            assert status_of(answer) in (0, 400, 404), answer[:200]  # 0: the server refused the request line
        # The positive control: a real call does show up on the spy.
        answer = await loop.run_in_executor(None, raw, dev, b"GET /function/hostile HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(answer) == 200
        await asyncio.sleep(0.3)
        await nc.flush()
    finally:
        await nc.close()
    invokes = [s for s in subjects if s.startswith("lf.invoke.")]
    assert "lf.invoke.default.hostile" in invokes
    assert set(invokes) <= {"lf.invoke.default.hostile"}, Counter(invokes)
    odd = [s for s in subjects if any(c in s for c in "*> \t%") or ".." in s or len(s) > 200]
    assert not odd, odd


# -- slow clients ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("trickle", [True, False], ids=["trickle", "silent"])
def test_slowloris_is_cut_by_the_header_timeout(dev: LfDev, trickle: bool) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", dev.port), timeout=10) as sock:
        sock.settimeout(0.25)
        if trickle:
            sock.sendall(b"GET /function/hostile HTTP/1.1\r\nHost: x\r\n")
        closed = False
        while time.monotonic() - started < HEADER_TIMEOUT_S + 4:
            try:
                if trickle:
                    sock.sendall(b"X")
                data = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:  # reset
                closed = True
                break
            if data == b"" or data.startswith(b"HTTP/1.1 408"):
                closed = True
                break
    elapsed = time.monotonic() - started
    assert closed, "the server kept a slow connection open"
    assert elapsed < HEADER_TIMEOUT_S + 3, elapsed
    assert_serving(dev)


def test_bodies_that_never_come_get_408_and_lock_nobody_out(dev: LfDev) -> None:
    """As many requests as the worker forwards at once declare a body and send none (issue 14, item 3): bodies are
    read before any gate, so the function still answers meanwhile, and each gets 408 after the body timeout."""
    started = time.monotonic()
    head = b"POST /function/hostile HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n"
    socks = [socket.create_connection(("127.0.0.1", dev.port), timeout=10) for _ in range(MAX_INFLIGHT)]
    try:
        for sock in socks:
            sock.sendall(head)
        assert_serving(dev)
        assert time.monotonic() - started < BODY_TIMEOUT_S, "the function waited for the stalled bodies"
        answers = []
        for sock in socks:
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
            answers.append(answer)
    finally:
        for sock in socks:
            sock.close()
    assert [status_of(a) for a in answers] == [408] * MAX_INFLIGHT, answers[0][:300]
    assert time.monotonic() - started < BODY_TIMEOUT_S + 3
    assert_serving(dev)


# -- overload -------------------------------------------------------------------------------------------------------


async def test_ten_times_capacity_gets_only_2xx_429_503_and_probes_recover(dev: LfDev) -> None:
    capacity = MAX_INFLIGHT + MAX_QUEUE
    connections = 10 * capacity
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one(i: int) -> httpx.Response:
            return await client.get(dev.url("hostile"), params={"sleep": "100", "i": str(i)})

        responses = await asyncio.gather(*(one(i) for i in range(connections)))
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 429, 503}, statuses
    assert statuses[200] > 0 and statuses[429] + statuses[503] > 0, statuses
    for response in responses:
        if response.status_code in (429, 503):
            assert response.headers["retry-after"].isdigit(), response.headers
            assert response.json()["error"]["layer"] == "ingestor"
    stopped = time.monotonic()
    wait_for(
        lambda: all(httpx.get(f"{dev.base_url}{p}", timeout=2).status_code == 200 for p in ("/healthz", "/readyz")),
        5,
        "the probes to be healthy after the load",
    )
    assert time.monotonic() - stopped < 5
    assert_serving(dev)


# -- cache and rate limit, end to end -------------------------------------------------------------------------------


def test_cache_hit_miss_vary_no_store_and_rate_limit(dev: LfDev) -> None:
    def get(**kwargs: object) -> httpx.Response:
        response = wait_for(
            lambda: (r := httpx.get(dev.url("cached"), timeout=5, **kwargs)).status_code == 200 and r,  # type: ignore[arg-type]
            10,
            "a call within the rate limit",
            interval=0.3,
        )
        assert isinstance(response, httpx.Response)
        return response

    first = get(params={"k": "1"})
    again = get(params={"k": "1"})
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "HIT")
    assert first.text == again.text and "age" in again.headers
    other = get(params={"k": "1"}, headers={"accept": "text/html"})
    assert other.headers["x-cache"] == "MISS" and other.text != first.text
    nostore = [get(params={"nostore": "1"}) for _ in range(2)]
    assert [r.headers["x-cache"] for r in nostore] == ["MISS", "MISS"] and nostore[0].text != nostore[1].text

    time.sleep(2.5)  # refill: rps 2, burst 5
    started = time.monotonic()
    answers = [httpx.get(dev.url("cached"), params={"k": "1"}, timeout=5) for _ in range(12)]
    elapsed = time.monotonic() - started
    statuses = [r.status_code for r in answers]
    assert 429 in statuses and set(statuses) == {200, 429}, statuses
    assert statuses.count(200) <= 5 + 2 * elapsed + 1, (statuses, elapsed)  # burst + rps x elapsed
    limited = next(r for r in answers if r.status_code == 429)
    assert limited.headers["retry-after"] == "1"
    assert limited.headers["ratelimit-limit"] == "5"
    assert limited.headers["ratelimit-remaining"] == "0"
    assert int(limited.headers["ratelimit-reset"]) >= 1
    assert limited.json()["error"] == {"code": "rate_limited", "message": limited.json()["error"]["message"],
                                       "layer": "ingestor"}  # fmt: skip
    assert answers[0].headers["ratelimit-limit"] == "5"


def test_a_redeploy_drops_the_cached_answers(dev: LfDev) -> None:
    def get() -> httpx.Response:
        response = wait_for(
            lambda: (r := httpx.get(dev.url("cached"), params={"k": "deploy"}, timeout=5)).status_code == 200 and r,
            10,
            "a call within the rate limit",
            interval=0.3,
        )
        assert isinstance(response, httpx.Response)
        return response

    before = get().text
    assert get().text == before  # cached
    handler = dev.root / "cached" / "handler.py"
    handler.write_text(handler.read_text() + "\n# redeployed\n")
    wait_for(lambda: get().text != before, 30, "the new revision to answer afresh", interval=0.5)


# -- the OpenAPI description ----------------------------------------------------------------------------------------


def test_schemathesis_finds_the_ingestor_true_to_its_openapi_description(dev: LfDev) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "run", str(REPO / "docs" / "openapi.yaml"),
            "--url", dev.base_url, "--max-examples", "25", "--phases", "examples,coverage,fuzzing",
            "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_headers_conformance,response_schema_conformance",
            "--generation-deterministic", "--request-timeout", "15", "--suppress-health-check", "all",
        ],
        capture_output=True, text=True, timeout=300, cwd=dev.root,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert_serving(dev)
