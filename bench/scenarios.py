"""What the bench measures: each scenario is a chain, a request and a load shape. Every run also measures the
canary, and every figure is reported absolute and as a share of the canary's requests/s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from bench.chains import Chain, lf_dev, lf_dev_valkey, many_routes
from bench.harness import Request

KIB = 1024


@dataclass(frozen=True)
class Scenario:
    name: str
    chain: Chain
    request: Request
    connections: int = 50
    about: str = ""


def _payload(size: int) -> bytes:
    return (b"0123456789abcdef" * (size // 16 + 1))[:size]


_JSON_DOC = json.dumps({"items": [{"id": i, "name": f"item-{i}", "tags": ["a", "b"]} for i in range(8)]}).encode()

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("sync-hello", lf_dev, Request("/function/hello"), about="GET, trivial handler, 0 B payload"),
        Scenario(
            "sync-1k",
            lf_dev,
            Request("/function/bytes", "POST", _payload(KIB), (("content-type", "application/octet-stream"),)),
            about="1 KiB body both ways",
        ),
        Scenario(
            "sync-64k",
            lf_dev,
            Request("/function/bytes", "POST", _payload(64 * KIB), (("content-type", "application/octet-stream"),)),
            about="64 KiB body both ways",
        ),
        Scenario(
            "json-echo",
            lf_dev,
            Request("/function/json", "POST", _JSON_DOC, (("content-type", "application/json"),)),
            about=f"{len(_JSON_DOC)} B JSON parsed and re-encoded",
        ),
        Scenario(
            "routes-1000",
            many_routes,
            Request(paths=tuple(f"/function/fn-{i}.bench" for i in range(1000))),
            about="1,000 routes, random function per request, 2 wildcard responders",
        ),
        Scenario(
            "sleep-10ms",
            lf_dev,
            Request("/function/sleep10ms"),
            connections=400,
            about="10 ms async handler, 400 connections",
        ),
        Scenario(
            "cache-hit",
            lf_dev,
            Request("/function/cached"),
            about="GET answered from the in-process response cache (budget: ≥ 70% of the canary)",
        ),
        Scenario(
            "ratelimit-pass",
            lf_dev,
            Request("/function/limited"),
            about="hello behind a per-IP token bucket it never exhausts (in-process)",
        ),
        Scenario(
            "ratelimit-refused",
            lf_dev,
            Request("/function/refused"),
            about="every call refused 429 by the function's rate limit (its non-2xx are the point)",
        ),
        Scenario(
            "ratelimit-exact-valkey",
            lf_dev_valkey,
            Request("/function/limited"),
            about="as ratelimit-pass, with the bucket in Valkey: one redis-py round trip per call",
        ),
        Scenario(  # last of the lf_dev chain: the runtime works off its backlog during whatever runs after it
            "async-submit",
            lf_dev,
            Request("/async-function/hello", "POST", b"hi"),
            about="async call accepted (202 after the JetStream PubAck); the runtime runs them meanwhile",
        ),
    ]
}
