"""The canary: a bare granian RSGI hello-world, run on the same core as the system under test in every run."""

from __future__ import annotations

from typing import Any

BODY = b"Hello, world!\n"
HEADERS = [("content-type", "text/plain; charset=utf-8")]


async def app(scope: Any, proto: Any) -> None:
    proto.response_bytes(200, HEADERS, BODY)
