"""The ingestor against a nats-server that requires credentials (issue 14, item 10): a refusal at start does not
end the worker's background task (it retries with backoff, `/readyz` says why), and the log never carries the
password of LF_NATS_URL."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lf_controlplane.natsserver import NatsServer, free_port, render_config

from tests.harness.natsserver import running_nats
from tests.harness.processes import clean_environ, stop_process
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.integration

PASSWORD = "pw-6f1c9a"  # what the ingestor is given; the broker first expects another one
AUTH = "authorization {{ user: alice, password: {} }}"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[NatsServer]:
    with running_nats(tmp_path / "nats", extra_config=AUTH.format("s3cr3t")) as server:
        yield server


def test_a_refused_login_is_retried_and_readyz_says_why_and_the_password_is_not_logged(
    broker: NatsServer, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "ingestor.log"
    url = broker.url.replace("nats://", f"nats://alice:{PASSWORD}@")
    env = clean_environ(LF_PORT=str(port), LF_NATS_URL=url, PYTHONUNBUFFERED="1")
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "lf_dataplane"], env=env, stdout=sink, stderr=sink)
    base = f"http://127.0.0.1:{port}"
    try:

        def refused() -> httpx.Response | None:
            assert process.poll() is None, log.read_text()
            response = httpx.get(f"{base}/readyz", timeout=2)
            return response if "credentials" in response.text else None

        readyz = wait_for(refused, 30, "/readyz to say the broker refused the credentials")
        assert readyz.status_code == 503
        assert readyz.json()["error"]["message"] == "the broker refused the ingestor's credentials; retrying"
        assert str(broker.port) not in readyz.text  # where the broker is stays in the log
        assert httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        wait_for(lambda: log.read_text().count("cannot connect to nats") >= 2, 30, "a second attempt in the log")

        # The operator fixes the broker's side (a config reload): the same worker connects and serves.
        assert broker.process is not None
        (broker.state_dir / "nats-server.conf").write_text(
            render_config(
                host=broker.host,
                port=broker.port,
                store_dir=broker.state_dir / "jetstream",
                extra=AUTH.format(PASSWORD),
            )
        )
        broker.signal(signal.SIGHUP)
        wait_for(lambda: httpx.get(f"{base}/readyz", timeout=2).status_code == 200, 60, "/readyz 200 after the fix")
    finally:
        stop_process(process)
    text = log.read_text()
    assert '"started"' in text and f"nats://127.0.0.1:{broker.port}" in text, text
    assert PASSWORD not in text, text
