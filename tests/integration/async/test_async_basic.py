"""Async calls end to end: 202 after the PubAck, status while queued and done, result, idempotency, cancel."""

from __future__ import annotations

import pytest
from async_harness import AsyncPlatform

pytestmark = pytest.mark.integration


def test_submit_poll_result(platform: AsyncPlatform) -> None:
    fn = platform.add_function()
    response = fn.submit("ok", b"hello")
    assert response.status_code == 202, response.text
    call_id = response.headers["x-call-id"]
    assert response.json()["callId"] == call_id
    done = fn.wait_status(call_id, ("succeeded",))
    assert done["attempts"] == 1
    assert done["result"]["status"] == 200
    assert '"body":"hello"' in done["result"]["body"]
