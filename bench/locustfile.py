"""Realistic user traffic against `lf dev examples/` (or any ingestor serving the examples), for locust.

    uv run locust -f bench/locustfile.py --host http://127.0.0.1:8080 \\
        --headless -u 50 -r 10 -t 60s --csv results/lf --only-summary

Locust is a user-behaviour tool, not a throughput meter: on 2 cores it saturates long before the platform does
(use `python -m bench` for per-core numbers). Here it checks that mixed traffic with think time is served
correctly: every answer is checked, not just counted.
"""

from __future__ import annotations

import random

from locust import FastHttpUser, between, task


class ApiClient(FastHttpUser):
    """A client application: mostly reads, some JSON writes, an occasional slow report."""

    wait_time = between(0.05, 0.5)

    @task(6)
    def greet(self) -> None:
        with self.client.get("/function/hello", name="hello", catch_response=True) as response:
            if response.text != "Hello, world!\n":
                response.failure(f"unexpected body {response.text[:80]!r}")

    @task(3)
    def post_order(self) -> None:
        order = {"id": random.randint(1, 10**6), "items": [{"sku": "A-1", "qty": random.randint(1, 5)}]}
        with self.client.post(
            "/function/echo/orders", json=order, name="echo /orders", catch_response=True
        ) as response:
            if response.status_code != 200 or response.json()["json"] != order:
                response.failure(f"echo did not return the order: {response.status_code}")

    @task(1)
    def slow_report(self) -> None:
        with self.client.get("/function/slow?seconds=0.05", name="slow 50ms", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")

    @task(1)
    def expected_error(self) -> None:
        """A call whose function raises: the platform must answer 500 with the function's error, fast."""
        with self.client.get("/function/fail", name="fail (expects 500)", catch_response=True) as response:
            if response.status_code == 500 and response.json()["error"]["layer"] == "function":
                response.success()
            else:
                response.failure(f"expected the function's 500, got {response.status_code}")
