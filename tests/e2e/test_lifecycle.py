"""The platform keeps serving through change: crashed replicas, edited handlers, new functions."""

from __future__ import annotations

import os
import signal

import httpx
import pytest

from tests.e2e.conftest import LfDev, wait_for

pytestmark = pytest.mark.e2e


def test_a_killed_runtime_is_restarted_and_served_again(lf_dev: LfDev) -> None:
    before = lf_dev.function_state("hello")
    pids = [r["pid"] for r in before["replica_states"]]
    assert before["state"] == "running" and all(pids)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    statuses: set[int] = set()

    def served_again() -> bool:
        status = httpx.get(lf_dev.url("hello"), timeout=5).status_code
        statuses.add(status)
        return status == 200

    wait_for(served_again, 20, "hello to be served after its replica was killed")
    assert statuses <= {200, 502, 503, 504}
    after = wait_for(
        lambda: (s := lf_dev.function_state("hello"))["restarts"] > before["restarts"] and s, 10, "a restart"
    )
    assert {r["pid"] for r in after["replica_states"]}.isdisjoint(pids)


def test_an_edited_handler_is_picked_up_without_restarting(lf_dev: LfDev) -> None:
    handler = lf_dev.root / "hello" / "handler.py"
    handler.write_text(handler.read_text().replace('f"{GREETING}, world!\\n"', 'f"{GREETING}, reloaded!\\n"'))
    wait_for(lambda: httpx.get(lf_dev.url("hello")).text == "Hello, reloaded!\n", 30, "the edited handler")
    assert lf_dev.process.poll() is None


def test_a_new_function_is_served_and_a_removed_one_is_gone(lf_dev: LfDev) -> None:
    lf_dev.lf("new", "fresh", "--dir", str(lf_dev.root))
    wait_for(lambda: httpx.get(lf_dev.url("fresh")).status_code == 200, 30, "the new function")
    assert "fresh" in httpx.get(lf_dev.url("fresh")).text
    (lf_dev.root / "fresh" / "function.yaml").unlink()
    wait_for(lambda: httpx.get(lf_dev.url("fresh")).status_code == 404, 30, "the removed function to 404")


def test_a_broken_manifest_keeps_the_previous_version_serving(lf_dev: LfDev) -> None:
    manifest = lf_dev.root / "echo" / "function.yaml"
    original = manifest.read_text()
    manifest.write_text(original + "  timeout: whenever\n")
    try:
        wait_for(lambda: lf_dev.function_state("echo").get("error"), 30, "the manifest error to be reported")
        assert "spec.timeout" in lf_dev.function_state("echo")["error"]
        assert httpx.post(lf_dev.url("echo"), json={}).status_code == 200
    finally:
        manifest.write_text(original)
    wait_for(lambda: not lf_dev.function_state("echo").get("error"), 30, "the error to clear")


def test_a_handler_that_fails_to_load_keeps_the_previous_version_serving(lf_dev: LfDev) -> None:
    handler = lf_dev.root / "fail" / "handler.py"
    original = handler.read_text()
    handler.write_text(original + "\nthis is not python\n")
    try:
        wait_for(lambda: lf_dev.function_state("fail").get("error"), 30, "the load failure to be reported")
        assert "did not start serving" in lf_dev.function_state("fail")["error"]
        assert httpx.get(lf_dev.url("fail")).json()["error"]["layer"] == "function"
    finally:
        handler.write_text(original)
    wait_for(lambda: not lf_dev.function_state("fail").get("error"), 30, "the error to clear")
