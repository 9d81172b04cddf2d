"""Waiting on a condition, the one way every test suite here waits: poll until it holds, fail naming it."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

import httpx

# What a probe may raise while the thing it watches is still coming up (a refused connection, a half-written
# file, a JSON document not there yet).
TRANSIENT = (httpx.TransportError, OSError, ValueError)


def wait_for(
    condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition", interval: float = 0.05
) -> Any:
    """Poll `condition` until it returns something truthy and return that; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except TRANSIENT as exc:
            last = exc
        else:
            if inspect.isawaitable(last):  # an async condition would be truthy at once, unawaited
                raise TypeError(f"wait_for polls a plain function; {what} returned an awaitable")
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
