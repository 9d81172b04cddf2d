"""Peers measured side by side with our platform (docs/performance.md): the same trivial handler behind the proxies of
OpenFaaS and Knative, and the hello a user would write with uvicorn instead. Every process of a chain runs on the
SUT core and is in the chain's roots, so CPU per call is counted per role.

The Go proxies are built once into a cache outside the repo (bench/peers/build.py); the Python processes other
than granian run under the peers' interpreter (PEER_PYTHON, see README.md).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
from lf_controlplane.natsserver import free_port

from bench.canary import BODY
from bench.chains import Endpoint, granian_argv
from bench.harness import REPO, BenchError, Request, service, wait_http
from bench.peers.build import ensure
from bench.scenarios import Scenario

APPS = Path(__file__).resolve().parent / "apps"


def check_proxied(url: str, body: bytes = BODY, header: str | None = None) -> None:
    """One request through the chain must return the upstream's hello (and the proxy's mark, when it adds one)."""
    response = httpx.get(url, timeout=5)
    if response.status_code != 200 or response.content != body:
        raise BenchError(f"{url} answered {response.status_code} {response.content[:80]!r}, not the hello")
    if header is not None and header not in response.headers:
        raise BenchError(f"{url} answered without {header}: not through the proxy?")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _upstream(stack: ExitStack, workdir: Path, name: str) -> tuple[str, int]:
    """The canary's hello under granian, its own process on the SUT core: (url, pid)."""
    port = free_port()
    proc = stack.enter_context(service(granian_argv("bench.canary:app", port), cwd=REPO, log=workdir / f"{name}.log"))
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/", proc=proc)
    return url, proc.pid


def _watchdog(stack: ExitStack, workdir: Path, upstream: str) -> tuple[str, int]:
    """Our of-watchdog model in http mode in front of `upstream`: (url, pid)."""
    binaries = ensure("openfaas-model")
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""), "mode": "http", "port": str(port), "http_upstream_url": upstream,
        "metrics_port": str(free_port()), "exec_timeout": "10s", "read_timeout": "10s", "write_timeout": "10s",
    }  # fmt: skip
    log = workdir / "watchdog.log"
    proc = stack.enter_context(service([str(binaries / "watchdog")], env=env, log=log))
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/", proc=proc)
    return url, proc.pid


@contextmanager
def watchdog_granian(workdir: Path) -> Iterator[Endpoint]:
    with ExitStack() as stack:
        upstream, granian = _upstream(stack, workdir, "upstream")
        url, watchdog = _watchdog(stack, workdir, upstream)
        check_proxied(url + "/", header="x-duration-seconds")
        yield Endpoint(url=url, roots=[watchdog, granian])


def _gateway(stack: ExitStack, workdir: Path, watchdog: str) -> tuple[str, int]:
    binaries = ensure("openfaas-model")
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""), "port": str(port), "upstream_url": watchdog,
        "metrics_port": str(free_port()), "upstream_timeout": "60s", "read_timeout": "60s", "write_timeout": "60s",
    }  # fmt: skip
    proc = stack.enter_context(service([str(binaries / "gateway")], env=env, log=workdir / "gateway.log"))
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/function/hello", proc=proc)
    return url, proc.pid


@contextmanager
def gateway_watchdog_granian(workdir: Path) -> Iterator[Endpoint]:
    with ExitStack() as stack:
        upstream, granian = _upstream(stack, workdir, "upstream")
        watchdog_url, watchdog = _watchdog(stack, workdir, upstream)
        url, gateway = _gateway(stack, workdir, watchdog_url)
        check_proxied(url + "/function/hello", header="x-call-id")
        check_proxied(url + "/function/hello", header="x-duration-seconds")
        yield Endpoint(url=url, roots=[gateway, watchdog, granian])


@contextmanager
def gateway_watchdog_flask(workdir: Path) -> Iterator[Endpoint]:
    with ExitStack() as stack:
        port = free_port()
        argv = [sys.executable, str(APPS / "flask_hello.py"), str(port)]
        flask = stack.enter_context(service(argv, log=workdir / "flask.log"))
        upstream = f"http://127.0.0.1:{port}"
        wait_http(upstream + "/", proc=flask)
        watchdog_url, watchdog = _watchdog(stack, workdir, upstream)
        url, gateway = _gateway(stack, workdir, watchdog_url)
        check_proxied(url + "/function/hello", header="x-duration-seconds")
        yield Endpoint(url=url, roots=[gateway, watchdog, flask.pid])


# Knative queue-proxy: what the revision reconciler sets on the queue-proxy container, with the defaults of
# config-observability (request metrics to Prometheus, no request log, no tracing) and container concurrency 0.
# Its admin (8022), autoscaler metrics (9090) and user metrics (9091) ports are fixed.
QUEUE_PROXY_FIXED_PORTS = (8022, 9090, 9091)
LOGGING_CONFIG = {
    "level": "info", "development": False, "outputPaths": ["stdout"], "errorOutputPaths": ["stderr"],
    "encoding": "json",
    "encoderConfig": {
        "timeKey": "timestamp", "levelKey": "severity", "nameKey": "logger", "callerKey": "caller",
        "messageKey": "message", "stacktraceKey": "stacktrace", "lineEnding": "", "levelEncoder": "",
        "timeEncoder": "iso8601", "durationEncoder": "", "callerEncoder": "",
    },
}  # fmt: skip


def queue_proxy_env(port: int, user_port: int) -> dict[str, str]:
    probe = {"tcpSocket": {"port": user_port, "host": "127.0.0.1"}, "successThreshold": 1}
    return {
        "PATH": os.environ.get("PATH", ""),
        "SERVING_NAMESPACE": "bench", "SERVING_SERVICE": "hello", "SERVING_CONFIGURATION": "hello",
        "SERVING_REVISION": "hello-00001", "SERVING_POD": "hello-00001-deployment-0", "SERVING_POD_IP": "127.0.0.1",
        "QUEUE_SERVING_PORT": str(port), "QUEUE_SERVING_TLS_PORT": str(free_port()), "USER_PORT": str(user_port),
        "CONTAINER_CONCURRENCY": "0", "REVISION_TIMEOUT_SECONDS": "300",
        "REVISION_RESPONSE_START_TIMEOUT_SECONDS": "0", "REVISION_IDLE_TIMEOUT_SECONDS": "0",
        "SERVING_READINESS_PROBE": json.dumps(probe), "ENABLE_PROFILING": "false",
        "SERVING_LOGGING_CONFIG": json.dumps(LOGGING_CONFIG), "SERVING_LOGGING_LEVEL": "info",
        "SERVING_REQUEST_LOG_TEMPLATE": "", "SERVING_ENABLE_REQUEST_LOG": "false",
        "SERVING_ENABLE_PROBE_REQUEST_LOG": "false",
        "SERVING_REQUEST_METRICS_BACKEND": "prometheus", "SERVING_REQUEST_METRICS_REPORTING_PERIOD_SECONDS": "5",
        "METRICS_DOMAIN": "knative.dev/internal/serving", "SYSTEM_NAMESPACE": "knative-serving",
        "TRACING_CONFIG_BACKEND": "none", "TRACING_CONFIG_ZIPKIN_ENDPOINT": "", "TRACING_CONFIG_DEBUG": "false",
        "TRACING_CONFIG_SAMPLE_RATE": "0.1",
        "ENABLE_HTTP2_AUTO_DETECTION": "false", "ENABLE_HTTP_FULL_DUPLEX": "false",
        "ENABLE_MULTI_CONTAINER_PROBES": "false",
    }  # fmt: skip


@contextmanager
def queue_proxy_granian(workdir: Path) -> Iterator[Endpoint]:
    busy = [port for port in QUEUE_PROXY_FIXED_PORTS if not _port_free(port)]
    if busy:
        raise BenchError(f"queue-proxy needs ports {busy} free (fixed in Knative)")
    with ExitStack() as stack:
        upstream, granian = _upstream(stack, workdir, "upstream")
        binaries = ensure("queue-proxy")
        port = free_port()
        env = queue_proxy_env(port, int(upstream.rsplit(":", 1)[1]))
        proc = stack.enter_context(service([str(binaries / "queue")], env=env, log=workdir / "queue-proxy.log"))
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/", proc=proc)
        check_proxied(url + "/")
        try:
            yield Endpoint(url=url, roots=[proc.pid, granian])
        finally:
            proc.kill()  # on SIGTERM it drains for 30 s (for Kubernetes' endpoints to catch up): nothing to wait for
            proc.wait()


@contextmanager
def uvicorn_hello(workdir: Path) -> Iterator[Endpoint]:
    port = free_port()
    argv = [
        sys.executable, "-m", "uvicorn", "--app-dir", str(APPS), "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1", "--loop", "uvloop", "--http", "httptools", "--lifespan", "off", "--log-level", "warning",
        "asgi_hello:app",
    ]  # fmt: skip
    with service(argv, log=workdir / "uvicorn.log") as proc:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/", proc=proc)
        check_proxied(url + "/")
        yield Endpoint(url=url, roots=[proc.pid])


SCENARIOS: list[Scenario] = [
    Scenario(
        "of-watchdog (model) → granian hello", watchdog_granian, Request("/"),
        about="our model of of-watchdog's http mode (Go) → bench.canary:app under granian",
    ),
    Scenario(
        "knative queue-proxy → granian hello", queue_proxy_granian, Request("/"),
        about="Knative Serving queue-proxy (knative.dev/serving/cmd/queue) → bench.canary:app under granian",
    ),
    Scenario(
        "openfaas gateway (model) → of-watchdog (model) → granian hello", gateway_watchdog_granian,
        Request("/function/hello"), about="our models of the gateway and of-watchdog (Go) → granian hello",
    ),
    Scenario(
        "openfaas gateway (model) → of-watchdog (model) → flask/waitress", gateway_watchdog_flask,
        Request("/function/hello"), about="models → the python3-http template's path: Flask under waitress",
    ),
    Scenario(
        "uvicorn hello (what a user would write instead)", uvicorn_hello, Request("/"),
        about="plain ASGI app, uvicorn with uvloop + httptools, one worker",
    ),
]  # fmt: skip
