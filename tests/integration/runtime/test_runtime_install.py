"""The Python runtime as a function's image installs it: a clean virtualenv holding `lf-runtime` and what it declares,
nothing else. It must not pull in the ingestor (lf-dataplane), its server (granian), the Valkey client (redis) or the
platform's metrics library (prometheus-client): a user's requirements.txt installs beside it and may pin other
versions of those. The replica started from that venv serves a call over a real nats-server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import nats
import pytest
from runtime_harness import call

from tests.harness.processes import clean_environ
from tests.harness.runtime import RuntimeProcess

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
DECLARED = {"lf-runtime", "lf-core", "lf-native", "msgspec", "nats-py", "uvloop"}
"""runtimes/python/pyproject.toml's dependencies, and theirs: the whole installed set of a replica."""
NEVER = {"lf-dataplane", "lf-valkey", "lf-controlplane", "granian", "redis", "hiredis", "prometheus-client"}


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`uv pip install ./runtimes/python` into a new venv (the workspace's lf-core and lf-native come along)."""
    venv = tmp_path_factory.mktemp("runtime-venv") / "venv"
    subprocess.run(["uv", "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, cwd=REPO)
    python = venv / "bin" / "python"
    subprocess.run(
        ["uv", "pip", "install", "--quiet", "--python", str(python), "./runtimes/python"], check=True, cwd=REPO
    )
    return python


def installed(python: Path) -> set[str]:
    listing = subprocess.run(
        ["uv", "pip", "list", "--format", "json", "--python", str(python)],
        check=True, capture_output=True, text=True, cwd=REPO,
    ).stdout  # fmt: skip
    return {entry["name"].lower() for entry in json.loads(listing)}


def test_the_runtime_installs_only_what_it_declares(runtime_venv: Path) -> None:
    names = installed(runtime_venv)
    assert not names & NEVER, f"a function's replica would carry {sorted(names & NEVER)}"
    assert names == DECLARED, f"undeclared: {sorted(names - DECLARED)}, missing: {sorted(DECLARED - names)}"


def replica_env(function: str, folder: Path, **env: str) -> dict[str, str]:
    """A clean environment, without the test venv's Python variables either (the replica has its own venv)."""
    environment = clean_environ(LF_FUNCTION=function, LF_FUNCTION_DIR=str(folder), **env)
    return {k: v for k, v in environment.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}


async def test_a_replica_from_the_clean_venv_serves_a_call(runtime_venv: Path, nats_url: str, tmp_path: Path) -> None:
    function = f"clean-{uuid.uuid4().hex[:8]}"
    (tmp_path / "handler.py").write_text(
        "import sys\n\n\ndef handle(req):\n"
        "    leaked = [m for m in ('lf_dataplane', 'granian', 'redis', 'prometheus_client') if m in sys.modules]\n"
        "    return {'echo': req.text, 'leaked': leaked}\n"
    )
    env = replica_env(function, tmp_path, LF_NATS_URL=nats_url)
    replica = RuntimeProcess.start(env, (str(runtime_venv), "-m", "lf_runtime"), cwd=tmp_path)
    try:
        client = await nats.connect(nats_url)
        try:
            response = await call(client, function, "/", body=b"hi", budget_ms=5000)
        finally:
            await client.close()
        assert response.status == 200, response
        assert json.loads(response.body) == {"echo": "hi", "leaked": []}
    finally:
        replica.stop()


def test_tracing_configured_without_its_extra_is_refused_by_name(runtime_venv: Path, tmp_path: Path) -> None:
    """The clean venv has no OpenTelemetry: asked to trace, the replica exits 2 (configuration) naming the extra,
    instead of failing on an ImportError later."""
    (tmp_path / "handler.py").write_text("def handle(req):\n    return 'hi'\n")
    env = replica_env(
        "traced", tmp_path, LF_NATS_URL="nats://127.0.0.1:9", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9"
    )
    replica = RuntimeProcess.start(env, (str(runtime_venv), "-m", "lf_runtime"), cwd=tmp_path, ready_timeout=None)
    assert replica.exit_code(60) == 2, replica.logs()
    replica.close()
    refusal = replica.named("bad_settings")
    assert refusal and "lf-runtime[tracing]" in refusal[0]["error"], replica.logs()
