"""How the runtime process starts and refuses to start: ready line, exit codes of bad configuration."""

from __future__ import annotations

import pytest
from runtime_harness import Start

pytestmark = pytest.mark.integration


def test_ready_names_the_subject_and_queue_group(start_runtime: Start) -> None:
    runtime = start_runtime(env={"LF_CONCURRENCY": "3"})
    ready = runtime.wait_for("ready")
    assert ready["subject"] == f"lf.invoke.default.{runtime.function}"
    assert ready["queue"] == f"default.{runtime.function}"
    assert (ready["function"], ready["namespace"], ready["concurrency"], ready["queue_depth"]) == (
        runtime.function,
        "default",
        3,
        3,
    )
    assert runtime.named("started")[0]["pid"] == runtime.process.pid


@pytest.mark.parametrize(
    ("env", "code", "event", "fragment"),
    [
        ({"LF_CONCURRENCY": "lots"}, 2, "bad_settings", "LF_CONCURRENCY"),
        ({"LF_FUNCTION": "Bad_Name"}, 2, "bad_settings", "LF_FUNCTION"),
        ({"LF_HANDLER": "nothere.handle"}, 2, "handler_not_found", "no module 'nothere'"),
        ({"LF_HANDLER": "handler.missing"}, 2, "handler_not_found", "no attribute 'missing'"),
        ({"LF_HANDLER": "broken.handle"}, 1, "handler_import_failed", "KeyError: 'LF_TEST_NOT_SET'"),
        ({"LF_NATS_URL": "nats://127.0.0.1:1", "LF_CONNECT_TIMEOUT": "1"}, 1, "failed", "no NATS server reachable"),
    ],
    ids=["bad-number", "bad-name", "no-module", "no-function", "import-raises", "no-broker"],
)
def test_refuses_to_start(start_runtime: Start, env: dict[str, str], code: int, event: str, fragment: str) -> None:
    broken = "import os\nos.environ['LF_TEST_NOT_SET']\n"
    runtime = start_runtime(env=env, wait_ready=False, files={"broken.py": broken})
    assert runtime.exit_code() == code
    failure = runtime.wait_for(event)
    assert fragment in failure["error"] + failure.get("traceback", "")


def test_the_runtime_does_not_load_typing_extensions() -> None:
    """msgspec would pull it in for 5.9 MiB of RSS (see lf_runtime.jsoncodec); a fresh interpreter proves it."""
    import subprocess
    import sys

    code = "import sys, lf_runtime.__main__; print('typing_extensions' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
