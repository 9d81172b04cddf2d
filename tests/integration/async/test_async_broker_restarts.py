"""1,000 async calls while NATS restarts twice (SIGTERM, then SIGKILL) under the running ingestor, dispatchers and
runtime: every call answered 202 completes; during the outages calls get 503 with Retry-After; none is 202 and
lost."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from async_harness import AsyncPlatform, wait_until

pytestmark = pytest.mark.integration

CALLS = 1000


def _restart(platform: AsyncPlatform, sig: int) -> None:
    broker = platform.broker
    assert broker.process is not None
    broker.process.send_signal(sig)
    broker.process.wait(20)
    broker.process = None
    time.sleep(0.5)  # an outage the clients see
    broker.start()  # same port, same store dir


def test_nats_restarted_twice_loses_no_accepted_call(platform: AsyncPlatform) -> None:
    fn = platform.add_function(concurrency=32)
    accepted: list[str] = []
    refused: list[int] = []
    other: list[str] = []
    lock = threading.Lock()

    def submit(i: int) -> None:
        with httpx.Client(timeout=15) as client:
            try:
                response = client.post(f"{platform.url}/async-function/{fn.name}/ok", content=str(i).encode())
            except httpx.TransportError as exc:
                with lock:
                    other.append(repr(exc))
                return
        with lock:
            if response.status_code == 202:
                accepted.append(response.headers["x-call-id"])
            elif response.status_code == 503:
                assert response.headers.get("retry-after")
                refused.append(i)
            else:
                other.append(f"{response.status_code} {response.text[:200]}")

    def restarts() -> None:
        time.sleep(1.0)
        _restart(platform, signal.SIGTERM)
        time.sleep(1.5)
        _restart(platform, signal.SIGKILL)

    restarter = threading.Thread(target=restarts)
    restarter.start()
    with ThreadPoolExecutor(8) as pool:
        for i in range(CALLS):
            pool.submit(submit, i)
            time.sleep(0.004)  # spread the calls over the restarts
    restarter.join()
    assert not other, other[:5]
    assert len(accepted) + len(refused) == CALLS
    assert refused, "no call fell into an outage: the test did not test anything"
    assert len(accepted) > CALLS // 3

    def all_done() -> bool:
        with httpx.Client(timeout=10) as client:
            pending = [
                c for c in accepted if client.get(f"{platform.url}/invocations/{c}").json().get("status") != "succeeded"
            ]
        return not pending

    wait_until(all_done, 120, "every accepted call to succeed", interval=1.0)
    print(f"accepted {len(accepted)}, refused with 503 {len(refused)}, lost 0")
