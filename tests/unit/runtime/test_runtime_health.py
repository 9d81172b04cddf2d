"""lf_runtime.health: what `/readyz` answers for each reason the replica gives (the states themselves are exercised
against a real broker in runtimes/conformance/test_readiness.py)."""

from __future__ import annotations

import pytest
from lf_runtime.health import answer


def test_ready_is_200() -> None:
    assert answer(lambda: None, b"/readyz") == ("200 OK", "text/plain", b"ready\n")


@pytest.mark.parametrize("reason", ["connecting to NATS", "draining"])
def test_not_ready_is_503_with_the_reason(reason: str) -> None:
    assert answer(lambda: reason, b"/readyz") == (
        "503 Service Unavailable",
        "text/plain",
        f"not ready: {reason}\n".encode(),
    )


def test_other_paths_are_404_without_asking_the_replica() -> None:
    def never() -> str | None:
        raise AssertionError("asked for /metrics")

    assert answer(never, b"/metrics")[0] == "404 Not Found"
