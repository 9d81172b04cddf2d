"""Pure parts of serving: the deadline margin, the error envelopes, the worker pool."""

from __future__ import annotations

import threading

import pytest
from lf_core.contract.protocol import ErrorKind
from lf_native import decode_response
from lf_runtime import replies
from lf_runtime.serving import usable_budget_s
from lf_runtime.workers import WorkerPool


@pytest.mark.parametrize(
    ("budget_ms", "expected_s"),
    [(60_000, 59.95), (1000, 0.95), (100, 0.095), (0, 0.0)],
    ids=["capped-at-50ms", "5-percent", "small", "none"],
)
def test_usable_budget_keeps_the_protocol_margin(budget_ms: int, expected_s: float) -> None:
    assert usable_budget_s(budget_ms) == pytest.approx(expected_s)


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        (ErrorKind.HANDLER, 500),
        (ErrorKind.TIMEOUT, 504),
        (ErrorKind.BUSY, 503),
        (ErrorKind.BAD_REQUEST, 502),
        (ErrorKind.RESPONSE_TOO_LARGE, 502),
        (ErrorKind.INTERNAL, 502),
    ],
)
def test_error_envelopes(kind: ErrorKind, status: int) -> None:
    decoded = decode_response(replies.error("c1", kind, "why", 7, True))
    assert (decoded.status, decoded.error_kind, decoded.error, decoded.call_id) == (status, kind, "why", "c1")
    assert (decoded.duration_ns, decoded.cold_start, decoded.body) == (7, True, b"")


def test_error_messages_are_bounded() -> None:
    decoded = decode_response(replies.error("c1", ErrorKind.HANDLER, "x" * 100_000))
    assert len(decoded.error) == replies.MAX_MESSAGE_CHARS


def test_bad_input_is_a_400_in_the_json_error_shape() -> None:
    decoded = decode_response(replies.bad_input("c1", "request body is empty"))
    assert (decoded.status, decoded.error_kind) == (400, ErrorKind.NONE)
    assert decoded.body == b'{"error":{"code":400,"message":"request body is empty","layer":"function"}}'


def test_worker_pool_reuses_idle_threads() -> None:
    pool = WorkerPool(max_threads=4)
    done = threading.Semaphore(0)
    for _ in range(3):  # one after another: one thread is enough
        pool.submit(lambda _: done.release(), None)
        assert done.acquire(timeout=5)
    assert pool.size == 1


def test_worker_pool_grows_to_its_limit_and_survives_failures() -> None:
    pool = WorkerPool(max_threads=2)
    gate, started, done = threading.Event(), threading.Semaphore(0), threading.Semaphore(0)

    def hold(_: object) -> None:
        started.release()
        gate.wait(5)
        done.release()

    def fail(_: object) -> None:
        raise RuntimeError("a job that raises must not kill its thread")

    for _ in range(3):
        pool.submit(hold, None)
    assert started.acquire(timeout=5) and started.acquire(timeout=5)
    assert pool.size == 2
    assert not started.acquire(timeout=0.05), "the third job waits for a free thread"
    gate.set()
    for _ in range(3):
        assert done.acquire(timeout=5)
    pool.submit(fail, None)
    pool.submit(lambda _: done.release(), None)
    assert done.acquire(timeout=5)
    assert pool.size == 2
