"""The callback host lookup at async submit (issue 14, item 6): bounded in time, and silent about addresses.

A lookup that never answers (a tarpit DNS server for the caller's own domain, or our resolver down) gives a 503
with Retry-After after LF_CALLBACK_RESOLVE_TIMEOUT: the call was not stored, the request itself may be fine. It
runs on a small pool of its own, so hanging lookups leave the loop's default executor free.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from lf_dataplane.http.asyncapi import AsyncCalls
from lf_dataplane.http.mapping import HttpError
from lf_dataplane.settings import Settings, SettingsError


async def no_bus(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the lookup needs no broker")


@pytest.fixture
def hanging() -> Any:
    """A resolver that does not answer until the test ends (then it gives up, as a real one would)."""
    released = threading.Event()
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        released.wait(30)
        raise OSError("gave up")

    resolve.asked = asked  # type: ignore[attr-defined]
    yield resolve
    released.set()


async def test_a_lookup_that_never_answers_is_a_bounded_503(hanging: Any) -> None:
    calls = AsyncCalls(no_bus, resolve=hanging, resolve_timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(HttpError) as refused:
        await asyncio.wait_for(calls._check_callback("https://tarpit.example/hook"), 5)
    assert 0.25 < time.monotonic() - started < 2
    assert (refused.value.status, refused.value.code) == (503, "callback_lookup_timeout")
    assert refused.value.retry_after is not None
    assert "tarpit.example" in refused.value.message and "0.3 s" in refused.value.message
    assert hanging.asked == ["tarpit.example"]


async def test_many_hanging_lookups_stay_bounded_and_leave_the_default_executor_free(hanging: Any) -> None:
    calls = AsyncCalls(no_bus, resolve=hanging, resolve_timeout_s=0.3)
    started = time.monotonic()
    results = await asyncio.wait_for(
        asyncio.gather(*(calls._check_callback(f"https://t{i}.example/") for i in range(20)), return_exceptions=True),
        5,
    )
    assert time.monotonic() - started < 2
    assert all(isinstance(r, HttpError) and r.status == 503 for r in results), results
    assert len(hanging.asked) <= 4  # the lookup pool's size: the rest timed out waiting and were never started
    loop = asyncio.get_running_loop()
    assert await asyncio.wait_for(loop.run_in_executor(None, lambda: "free"), 1) == "free"


async def test_a_private_address_is_refused_without_naming_it() -> None:
    calls = AsyncCalls(no_bus, resolve=lambda host, port: ["93.184.216.34", "10.1.2.3"])
    with pytest.raises(HttpError) as refused:
        await calls._check_callback("https://internal.example/hook")
    assert (refused.value.status, refused.value.code) == (400, "bad_callback_url")
    assert "internal.example" in refused.value.message and "non-public" in refused.value.message
    assert "10.1.2.3" not in refused.value.message and "93.184.216.34" not in refused.value.message


def test_the_bound_is_a_setting() -> None:
    assert Settings.from_env({}).callback_resolve_timeout_s == 2.0
    assert Settings.from_env({"LF_CALLBACK_RESOLVE_TIMEOUT": "500ms"}).callback_resolve_timeout_s == 0.5
    with pytest.raises(SettingsError, match="LF_CALLBACK_RESOLVE_TIMEOUT"):
        Settings.from_env({"LF_CALLBACK_RESOLVE_TIMEOUT": "soon"})
