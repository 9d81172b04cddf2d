"""Observability as a user meets it: a real Prometheus scraping `lf dev`, promtool on /metrics, `lf logs`.

Prometheus (Debian's package) is started on loopback with a 1 s scrape interval; after a known set of calls its
HTTP API must return exactly those counts by function and code, and one cold start for the one replica.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from lf_controlplane.natsserver import free_port

from tests.e2e.conftest import LfDev, start_lf_dev, stop, wait_for
from tests.harness.promtool import promtool_check

pytestmark = pytest.mark.e2e

PROMETHEUS = shutil.which("prometheus")

PRINTER = """
import sys


def handle(req):
    if req.query_params.get("fail"):
        raise RuntimeError("asked to fail")
    if req.query_params.get("long"):
        print("x" * (1024 * 1024))  # one 1 MiB line (issue 14, item 9)
    print(f"printed by {req.path}")
    print("to stderr too", file=sys.stderr)
    return "ok\\n"
"""


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LfDev]:
    root = tmp_path_factory.mktemp("obsfunctions")
    fn = root / "printer"
    fn.mkdir()
    (fn / "function.yaml").write_text(
        "apiVersion: litefunctions.io/v1alpha1\nkind: Function\nmetadata:\n  name: printer\n"
        "spec:\n  runtime: python\n  handler: handler.handle\n"
    )
    (fn / "handler.py").write_text(PRINTER)
    work = tmp_path_factory.mktemp("obsdev")
    dev = start_lf_dev(root, work / ".lf", work / "lf-dev.log", extra_env={"LF_METRICS_FLUSH": "200ms"})
    try:
        yield dev
    finally:
        stop(dev)


@pytest.fixture(scope="module")
def prometheus(dev: LfDev, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert PROMETHEUS is not None, "prometheus is not installed (Debian package prometheus)"
    work = tmp_path_factory.mktemp("prometheus")
    config = work / "prometheus.yml"
    replicas = wait_for(lambda: replica_targets(dev), 60, "printer's replicas to have a metrics_url")
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: lf-ingestor\n    static_configs:\n"
        f"      - targets: ['{ingestor_metrics(dev).removeprefix('http://').removesuffix('/metrics')}']\n"
        "  - job_name: lf-replicas\n    static_configs:\n"
        f"      - targets: [{', '.join(repr(t) for t in replicas)}]\n"
    )
    port = free_port()
    with (work / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200, 60, "prometheus to be ready")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ingestor_metrics(dev: LfDev) -> str:
    """The ingestor's /metrics on its admin listener, as `lf dev` recorded it in its state file."""
    url = json.loads((dev.state_dir / "state.json").read_text())["metrics_url"]
    assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics"), url
    return str(url)


def replica_targets(dev: LfDev) -> list[str]:
    """`host:port` of every printer replica's /metrics, from `lf list -o json` (empty until all have one)."""
    found = [f for f in dev.state() if f["name"] == "printer"]
    replicas = found[0].get("replica_states", []) if found else []
    urls = [r.get("metrics_url") for r in replicas]
    if not urls or not all(urls):
        return []
    return [str(u).removeprefix("http://").removesuffix("/metrics") for u in urls]


def query(prometheus: str, expr: str) -> list[dict[str, object]]:
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert body["status"] == "success", body
    result: list[dict[str, object]] = body["data"]["result"]
    return result


def test_prometheus_counts_calls_by_function_and_code_and_one_cold_start(dev: LfDev, prometheus: str) -> None:
    seen: Counter[str] = Counter()

    def call(path: str) -> httpx.Response:
        response = httpx.get(dev.url("printer", path), timeout=30)
        seen[str(response.status_code)] += 1
        assert "x-overhead-seconds" in response.headers
        return response

    wait_for(lambda: call("/warm").status_code == 200, 60, "printer to answer")
    for i in range(12):
        assert call(f"/n{i}").status_code == 200
    for _ in range(3):
        assert call("/?fail=1").status_code == 500

    def counts() -> dict[str, float]:
        rows = query(prometheus, 'sum by (code) (litefunctions_invocations_total{function="printer"})')
        return {str(r["metric"]["code"]): float(r["value"][1]) for r in rows}  # type: ignore[index]

    expected = {code: float(n) for code, n in seen.items()}
    wait_for(lambda: counts() == expected, 30, f"prometheus to see {expected}")
    gw = query(prometheus, 'sum by (code) (gateway_function_invocation_total{function_name="printer.default"})')
    assert {str(r["metric"]["code"]): float(r["value"][1]) for r in gw} == expected  # type: ignore[index]
    cold = query(prometheus, 'litefunctions_cold_starts_total{function="printer"}')
    assert [float(r["value"][1]) for r in cold] == [1.0]  # type: ignore[index]
    errors = query(prometheus, 'litefunctions_errors_total{function="printer",layer="function"}')
    assert sum(float(r["value"][1]) for r in errors) == 3  # type: ignore[index]

    def runtime_cold_starts() -> list[float]:
        rows = query(prometheus, 'litefunctions_runtime_cold_starts_total{function="printer"}')
        return [float(r["value"][1]) for r in rows]  # type: ignore[index]

    # The replicas are a scrape job of their own: wait for a scrape after the calls rather than assume one
    # happened; a count other than one never satisfies the wait.
    wait_for(lambda: runtime_cold_starts() == [1.0], 30, "the replica's cold start, counted once, to be scraped")

    def runtime_calls() -> dict[str, float]:
        rows = query(prometheus, 'sum by (outcome) (litefunctions_runtime_calls_total{function="printer"})')
        return {str(r["metric"]["outcome"]): float(r["value"][1]) for r in rows if float(r["value"][1])}  # type: ignore[index]

    by_outcome = {"ok": expected["200"], "handler_error": expected["500"]}
    wait_for(lambda: runtime_calls() == by_outcome, 30, f"the replica's own counts to be {by_outcome}")
    p99 = query(
        prometheus,
        'histogram_quantile(0.99, sum by (le) (litefunctions_invocation_duration_seconds_bucket{function="printer"}))',
    )
    assert p99, "the duration histogram is queryable"


def test_promtool_accepts_the_ingestors_metrics(dev: LfDev) -> None:
    promtool_check(httpx.get(ingestor_metrics(dev), timeout=10).raise_for_status().text)


def test_lf_dev_serves_metrics_on_its_admin_port_only(dev: LfDev) -> None:
    """Item 8 of issue 14: the ingestor's /metrics (every tenant's functions) is not on the public port; `lf dev`
    starts the admin listener on a port of its own and prints where."""
    assert httpx.get(f"{dev.base_url}/metrics", timeout=10).status_code == 404
    url = ingestor_metrics(dev)
    assert f"metrics on {url}" in dev.output()
    assert "litefunctions_ingestor_workers" in httpx.get(url, timeout=10).text


def test_a_1_mib_output_line_is_cut_and_the_replica_stays_supervised(dev: LfDev) -> None:
    """Issue 14, item 9: a replica printing one 1 MiB line used to end lf dev's relay of its output (readline's
    64 KiB limit); the replica then blocked on the full pipe. Now the line is cut with a marker and the same replica
    keeps answering and its output keeps being relayed."""
    wait_for(lambda: httpx.get(dev.url("printer"), timeout=30).status_code == 200, 60, "printer to answer")
    restarts = dev.function_state("printer")["restarts"]
    assert httpx.get(dev.url("printer", "/long?long=1"), timeout=30).status_code == 200
    wait_for(lambda: "more bytes not shown]" in dev.output(), 30, "the cut line in lf dev's output")
    assert httpx.get(dev.url("printer", "/after-long"), timeout=30).status_code == 200
    wait_for(lambda: "printed by /after-long" in dev.output(), 30, "the replica's next output relayed")
    state = dev.function_state("printer")
    assert (state["state"], state["restarts"]) == ("running", restarts)


def test_lf_logs_shows_a_calls_print_output_by_call_id(dev: LfDev) -> None:
    wait_for(lambda: httpx.get(dev.url("printer"), timeout=30).status_code == 200, 60, "printer to answer")
    response = httpx.get(dev.url("printer", "/marked-call"), timeout=30)
    call_id = response.headers["x-call-id"]

    def shown() -> str:
        done = dev.lf("logs", "printer", "--call", call_id, check=False)
        return done.stdout.decode() if done.returncode == 0 else ""

    out = wait_for(shown, 30, f"lf logs --call {call_id}")
    lines = out.splitlines()
    assert any(call_id in line and "stdout" in line and "printed by /marked-call" in line for line in lines), out
    assert any(call_id in line and "stderr" in line and "to stderr too" in line for line in lines), out
    assert all(call_id in line for line in lines), out  # only that call
    everything = dev.lf("logs", "printer").stdout.decode()
    assert "printed by /marked-call" in everything and everything.count("printed by") >= 2
    assert "printed by /marked-call" in dev.output()  # still on the replica's own stdout (lf dev shows it)


def test_a_missing_call_is_an_error(dev: LfDev) -> None:
    done = dev.lf("logs", "printer", "--call", "no-such-call", check=False)
    assert done.returncode == 1
