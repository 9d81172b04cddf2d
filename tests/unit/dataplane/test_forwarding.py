"""`invoke` over a fake bus: one call, busy retries until the deadline, garbage, budgets. Fake time, no sleeps."""

from __future__ import annotations

import pytest
from lf_core.bus.errors import BusTimeout, NoResponders
from lf_core.bus.invoking import BUSY_RETRY_MIN_S, BadResponse, invoke
from lf_core.contract.protocol import ErrorKind
from lf_native import decode_request, encode_request, encode_response


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds


class FakeBus:
    """Answers each request with the next scripted reply (bytes) or raises it (an exception)."""

    connected = True

    def __init__(self, clock: FakeClock, replies: list[bytes | Exception], cost_s: float = 0.001) -> None:
        self.clock = clock
        self.replies = list(replies)
        self.cost_s = cost_s
        self.sent: list[tuple[str, bytes, float]] = []

    async def request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        self.sent.append((subject, payload, timeout))
        self.clock.now += self.cost_s
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        return reply


def encoder(budget_ms: int) -> bytes:
    return encode_request("cid", "GET", "/", "", [], b"", budget_ms)


OK = encode_response(200, [("content-type", "text/plain")], b"hi", call_id="cid")
BUSY = encode_response(503, [], b"", error_kind=ErrorKind.BUSY, error="busy")


async def test_one_call_returns_the_envelope_and_sends_the_budget() -> None:
    clock = FakeClock()
    bus = FakeBus(clock, [OK])
    response = await invoke(bus, "lf.invoke.default.echo", encoder, clock.now + 2.0, clock=clock, sleep=clock.sleep)
    assert (response.status, response.body) == (200, b"hi")
    [(subject, payload, timeout)] = bus.sent
    assert subject == "lf.invoke.default.echo"
    assert decode_request(payload).budget_ms == 2000
    assert timeout == pytest.approx(2.25)  # the deadline plus the grace


async def test_busy_is_retried_until_another_replica_answers() -> None:
    clock = FakeClock()
    bus = FakeBus(clock, [BUSY, BUSY, BUSY, OK])
    response = await invoke(bus, "s", encoder, clock.now + 1.0, clock=clock, sleep=clock.sleep)
    assert response.status == 200
    budgets = [decode_request(p).budget_ms for _, p, _ in bus.sent]
    assert len(budgets) == 4
    assert budgets == sorted(budgets, reverse=True) and budgets[-1] < 1000  # each retry carries what is left


async def test_busy_until_the_deadline_returns_the_busy_answer() -> None:
    clock = FakeClock()
    bus = FakeBus(clock, [BUSY])
    deadline = clock.now + 0.5
    response = await invoke(bus, "s", encoder, deadline, clock=clock, sleep=clock.sleep)
    assert response.error_kind == ErrorKind.BUSY
    assert deadline - BUSY_RETRY_MIN_S < clock.now <= deadline  # gave up only once too little time was left
    assert 5 < len(bus.sent) < 200  # backed off, not spinning


async def test_busy_is_not_retried_with_too_little_time_left() -> None:
    clock = FakeClock()
    bus = FakeBus(clock, [BUSY], cost_s=0.045)  # the busy answer comes 5 ms before the deadline
    response = await invoke(bus, "s", encoder, clock.now + 0.05, clock=clock, sleep=clock.sleep)
    assert response.error_kind == ErrorKind.BUSY
    assert len(bus.sent) == 1  # no retry with 2-4 ms left, which a replica could only answer 504
    assert BUSY_RETRY_MIN_S > 0.005


async def test_garbage_is_a_bad_response() -> None:
    clock = FakeClock()
    with pytest.raises(BadResponse):
        await invoke(FakeBus(clock, [b"\x00garbage"]), "s", encoder, clock.now + 1, clock=clock, sleep=clock.sleep)


async def test_bus_errors_pass_through() -> None:
    clock = FakeClock()
    with pytest.raises(NoResponders):
        await invoke(FakeBus(clock, [NoResponders("s")]), "s", encoder, clock.now + 1, clock=clock)


async def test_a_spent_deadline_is_a_timeout_without_sending() -> None:
    clock = FakeClock()
    bus = FakeBus(clock, [OK])
    with pytest.raises(BusTimeout):
        await invoke(bus, "s", encoder, clock.now, clock=clock)
    assert bus.sent == []


async def test_without_busy_retries_the_first_busy_answer_is_returned() -> None:
    clock = FakeClock()
    bus = FakeBus(clock, [BUSY, OK])
    response = await invoke(bus, "lf.invoke.default.echo", encoder, clock.now + 2.0, clock=clock, sleep=clock.sleep,
                            retry_busy=False)  # fmt: skip
    assert response.error_kind == ErrorKind.BUSY
    assert len(bus.sent) == 1  # the dispatcher's back-pressure: no second try here
