"""The platform on a real node, end to end (issue 13): the images `make images` builds, pushed to a real Zot, the
Helm chart installed with them, and functions deployed, called, rolled, scaled, attacked and deleted.

One install per module (it takes minutes); the tests run in file order, each leaving the platform as the next one
expects (pytest keeps definition order). Calls go to the ingestor's Service ClusterIP from the host (kube-proxy's
OUTPUT rules route it), as a client inside the cluster would.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster.pods import exec_probe, probe_pod, wait_ready
from tests.harness.waiting import wait_for
from tools.helm import build as helm_build
from tools.helm.chart import CHART
from tools.k8s.node import Node
from tools.registry.zot import Zot

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS = Path(__file__).resolve().parent / "functions"
SYSTEM = "lf-system"
RESTRICTED = "pod-security.kubernetes.io/enforce=restricted"


@dataclass
class Platform:
    node: Node
    zot: Zot
    url: str
    """The ingestor Service, http://CLUSTER-IP:PORT."""
    env: dict[str, str] = field(default_factory=dict)
    """The environment for `lf`: KUBECONFIG of the node, the registry and its credentials."""

    def lf(self, *args: str, input: str | None = None, timeout: float = 600) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "lf_controlplane", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )
        assert done.returncode == 0, f"lf {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}"
        return done.stdout

    def get(self, kind: str, name: str = "", namespace: str = SYSTEM) -> dict[str, Any]:
        args = ["get", kind, *([name] if name else []), "-n", namespace, "-o", "json"]
        return dict(json.loads(self.node.kubectl(*args)))

    def call(self, name: str, client: httpx.Client, **kwargs: Any) -> httpx.Response:
        return client.post(f"{self.url}/function/{name}", **kwargs)


def _label_restricted(node: Node, namespace: str) -> None:
    if namespace != "default":
        node.kubectl("create", "namespace", namespace, check=False)
    node.kubectl("label", "--overwrite", "namespace", namespace, RESTRICTED)


def _build_and_push_images(zot: Zot, out: Path) -> Path:
    done = subprocess.run(
        [sys.executable, "-m", "tools.images", "build", "--out", str(out), "--push", zot.address]
        + ["--creds", str(zot.auth_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert done.returncode == 0, f"tools.images build failed:\n{done.stderr[-4000:]}"
    return out / "values.yaml"


@pytest.fixture(scope="module")
def platform(node: Node, zot: Zot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    values = _build_and_push_images(zot, tmp_path_factory.mktemp("images"))
    for namespace in (SYSTEM, "default"):
        _label_restricted(node, namespace)
    node.create_volumes(4, size="4Gi", storage_class="lf-local")  # three NATS servers and PostgreSQL
    helm = str(helm_build.ensure())
    install = [
        helm,
        "install",
        "lf",
        str(CHART),
        f"--kubeconfig={node.kubeconfig}",
        "--namespace",
        SYSTEM,
        "--values",
        str(values),
        "--set",
        "nats.storage.storageClass=lf-local",
        "--set",
        "postgres.storage.storageClass=lf-local",
        # The node runs CoreDNS as a host process on its own address: the function pods' DNS egress names it.
        "--set-json",
        f'functions.dns.peers=[{{"ipBlock":{{"cidr":"{node.node_ip}/32"}}}}]',
        "--wait",
        "--timeout=10m",
    ]
    done = subprocess.run(install, capture_output=True, text=True, timeout=700, check=False)
    if done.returncode != 0:
        pods = node.kubectl("get", "pods", "-A", "-o", "wide", check=False)
        events = node.kubectl("get", "events", "-n", SYSTEM, "--sort-by=.lastTimestamp", check=False)
        pytest.fail(f"helm install failed:\n{done.stderr[-3000:]}\n{pods}\n{events[-4000:]}")
    node.kubectl("wait", "--for=condition=Ready", "pods", "--all", "-n", SYSTEM, "--timeout=300s", timeout=320)
    service = json.loads(node.kubectl("get", "service", "lf-ingestor", "-n", SYSTEM, "-o", "json"))
    port = service["spec"]["ports"][0]["port"]
    env = {
        **os.environ,
        "KUBECONFIG": str(node.kubeconfig),
        "LF_REGISTRY": zot.address,
        "LF_REGISTRY_CREDS": str(zot.auth_file),
    }
    yield Platform(node, zot, f"http://{service['spec']['clusterIP']}:{port}", env)


def _answer(platform: Platform, name: str, expect: Callable[[httpx.Response], bool], timeout: float = 120) -> None:
    """Wait until a call of `name` gets an answer `expect` accepts (a new Function's route and replica take a few
    seconds to appear); a failure shows the last answer."""

    def answered() -> bool:
        with httpx.Client(timeout=10) as client:
            response = platform.call(name, client)
        if not expect(response):
            raise ValueError(f"{response.status_code} {response.text[:200]}")  # wait_for keeps it as the last
        return True

    wait_for(answered, timeout, f"the expected answer of {name}", interval=0.5)


def test_every_platform_pod_is_ready_runs_by_digest_and_one_operator_leads(platform: Platform) -> None:
    pods = platform.get("pods")["items"]
    by_app = Counter(pod["metadata"]["labels"].get("app.kubernetes.io/name") for pod in pods)
    assert by_app["lf-operator"] == 2 and by_app["lf-nats"] == 3 and by_app["lf-ingestor"] >= 2, by_app
    assert by_app["lf-dispatcher"] == 2, by_app
    for pod in pods:
        for container in pod["spec"]["containers"] + pod["spec"].get("initContainers", []):
            assert "@sha256:" in container["image"], (pod["metadata"]["name"], container["image"])
        statuses = pod["status"]["containerStatuses"]
        assert all(status["ready"] for status in statuses), pod["metadata"]["name"]
    lease = platform.get("lease", "lf-operator")
    holder = lease["spec"]["holderIdentity"]
    operators = {
        pod["metadata"]["name"]
        for pod in pods
        if pod["metadata"]["labels"].get("app.kubernetes.io/name") == "lf-operator"
    }
    assert holder in operators, (holder, operators)  # the chart names each candidate by its pod


def test_inline_function_from_kubectl_apply_answers_through_the_ingestor(platform: Platform) -> None:
    manifest = platform.lf("deploy", "--dry-run", "-o", "yaml", str(REPO / "examples" / "hello"))
    platform.node.kubectl("apply", "-f", "-", input=manifest)
    _answer(platform, "hello", lambda r: r.status_code == 200 and r.text == "Hello, world!\n")


def _dispatcher_pods(platform: Platform) -> list[dict[str, Any]]:
    pods = platform.get("pods")["items"]
    return [p for p in pods if p["metadata"]["labels"].get("app.kubernetes.io/name") == "lf-dispatcher"]


def _runs(platform: Platform, function: str) -> float:
    """Async attempts the dispatcher pods started for `function` (their /metrics, scraped from the node, which
    NetworkPolicy always admits)."""
    total = 0.0
    prefix = f'litefunctions_async_runs_total{{function="{function}",namespace="default"}} '
    for pod in _dispatcher_pods(platform):
        text = httpx.get(f"http://{pod['status']['podIP']}:9090/metrics", timeout=5).text
        total += sum(float(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix))
    return total


def _in_dispatcher(platform: Platform, pod: str, code: str) -> subprocess.CompletedProcess[str]:
    """Python in a dispatcher pod (its image has no shell: kubectl exec runs python3 itself)."""
    argv = [str(platform.node.bin_dir / "kubectl"), f"--kubeconfig={platform.node.kubeconfig}", "exec", pod, "-n",
            SYSTEM, "--", "python3", "-c", code]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_an_async_call_completes_through_the_dispatcher_pods(platform: Platform) -> None:
    """Issue 15: the runtimes keep only the sync protocol; an async call of the deployed function is pulled,
    invoked and recorded by the chart's dispatcher pods (their run counters move), and the namespace's callback
    key, which the operator made when the Function appeared, reaches the dispatchers' mounted Secret."""
    before = _runs(platform, "hello")
    accepted = []
    with httpx.Client(timeout=10) as client:
        for _ in range(5):
            response = client.post(f"{platform.url}/async-function/hello")
            assert response.status_code == 202, response.text
            accepted.append(response.headers["x-call-id"])

        def done(call_id: str) -> dict[str, Any] | None:
            view = client.get(f"{platform.url}/invocations/{call_id}").json()
            return view if view.get("status") in ("succeeded", "failed", "dead") else None

        for call_id in accepted:
            view = wait_for(lambda c=call_id: done(c), 60, f"async call {call_id}", interval=0.5)
            assert view["status"] == "succeeded" and view["result"]["body"] == "Hello, world!\n", view
    assert _runs(platform, "hello") >= before + len(accepted)

    keys = platform.get("secret", "lf-callback-keys")["data"]["default.json"]
    assert platform.get("secret", "lf-callback-key", "default")["data"] == {"default.json": keys}
    read = "import sys; sys.stdout.write(open('/var/run/lf/callback-keys/default.json').read())"
    pod = _dispatcher_pods(platform)[0]["metadata"]["name"]
    wait_for(lambda: _in_dispatcher(platform, pod, read).stdout == base64.b64decode(keys).decode(), 180,
             "the kubelet to update the dispatcher's mounted lf-callback-keys", interval=2)  # fmt: skip


def test_the_dispatcher_reaches_nats_but_not_the_clusters_private_addresses(platform: Platform) -> None:
    """The chart's NetworkPolicy lf-dispatcher, enforced by kube-router: the dispatcher dials NATS and redis-server,
    while a callback aimed at the cluster (the ingestor's Service, PostgreSQL) is refused by the second fence even
    if it got past the SSRF guard."""
    pod = _dispatcher_pods(platform)[0]["metadata"]["name"]
    dial = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()"

    def reach(host: str, port: int) -> subprocess.CompletedProcess[str]:
        return _in_dispatcher(platform, pod, f"import sys; sys.argv[1:] = [{host!r}, '{port}']; {dial}")

    for host, port in ((f"lf-nats.{SYSTEM}.svc", 4222), (f"lf-redis.{SYSTEM}.svc", 6379)):
        done = reach(host, port)
        assert done.returncode == 0, (host, done.stderr[-1000:])
    for service, port in (("lf-ingestor", 80), ("lf-postgres", 5432)):
        address = platform.get("service", service)["spec"]["clusterIP"]
        with socket.create_connection(
            (address, port), timeout=5
        ):  # it listens: what stops the dispatcher is the policy
            pass
        done = reach(address, port)
        assert done.returncode != 0, f"the dispatcher reached {service} at {address}:{port}"
        assert "timed out" in done.stderr or "refused" in done.stderr, done.stderr[-1000:]


@pytest.mark.parametrize(
    ("folder", "name", "expected"),
    [
        (FUNCTIONS / "deps", "deps", "deps: 3 days ago\n"),
        (REPO / "examples" / "hello-go", "hello-go", None),
        (REPO / "examples" / "hello-rust", "hello-rust", None),
    ],
)
def test_image_functions_built_here_pushed_and_run_by_digest(
    platform: Platform, folder: Path, name: str, expected: str | None
) -> None:
    """`lf deploy --registry`: the image (with a requirements layer for Python) is built on this machine, pushed
    to Zot, and the Function names it by digest."""
    platform.lf("deploy", str(folder), "--timeout", "300")
    spec = platform.get("function", name, "default")["spec"]
    assert spec["image"].startswith(f"{platform.zot.address}/") and "@sha256:" in spec["image"], spec["image"]
    if expected is None:
        _answer(platform, name, lambda r: r.status_code == 200 and "Hello" in r.text)
    else:
        _answer(platform, name, lambda r: r.status_code == 200 and r.text == expected)


@dataclass
class Load:
    """Calls from a few threads until stopped: counts answers and keeps the failures."""

    send: Callable[[httpx.Client], httpx.Response]
    threads: int = 4
    answers: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    response = self.send(client)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(repr(exc))
                    continue
                with self._lock:
                    if response.status_code == 200:
                        self.answers[response.text] += 1
                    else:
                        self.failures.append(f"{response.status_code} {response.text[:200]}")

    def __enter__(self) -> Load:
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=60)


def test_a_new_version_rolls_out_under_constant_load_with_zero_failed_calls(platform: Platform) -> None:
    with Load(lambda client: platform.call("hello", client)) as load:
        wait_for(lambda: sum(load.answers.values()) >= 50, 60, "calls under load")
        platform.node.kubectl(
            "patch", "function", "hello", "-n", "default", "--type=merge", "-p", '{"spec":{"env":{"GREETING":"Howdy"}}}'
        )
        wait_for(lambda: load.answers["Howdy, world!\n"] >= 50, 240, "the new version answering")
        platform.node.kubectl("rollout", "status", "deployment/hello", "-n", "default", "--timeout=240s", timeout=250)
        before = sum(load.answers.values())
        wait_for(lambda: sum(load.answers.values()) >= before + 50, 60, "calls after the rollout")
    assert load.failures == [], f"{len(load.failures)} failed calls, first: {load.failures[:5]}"
    assert load.answers["Hello, world!\n"] > 0 and load.answers["Howdy, world!\n"] > 0, load.answers
    assert set(load.answers) == {"Hello, world!\n", "Howdy, world!\n"}, load.answers


def test_kubectl_scale_function_gives_three_ready_replicas(platform: Platform) -> None:
    platform.node.kubectl("scale", "function", "hello", "-n", "default", "--replicas=3")

    def three_ready() -> bool:
        status = platform.get("deployment", "hello", "default").get("status", {})
        return bool(status.get("readyReplicas") == 3 and status.get("updatedReplicas") == 3)

    wait_for(three_ready, 180, "three ready replicas of hello", interval=0.5)
    function = platform.get("function", "hello", "default")
    assert function["spec"]["replicas"] == 3


def test_a_nats_pod_killed_under_async_load_loses_no_accepted_call(platform: Platform) -> None:
    """Every call answered 202 completes though one of the three NATS servers is killed while calls go in (R3
    streams); a call refused with 503 was never accepted and is not counted."""
    accepted: list[str] = []
    refused: Counter[int] = Counter()
    lock = threading.Lock()

    def submit(client: httpx.Client) -> httpx.Response:
        response = client.post(f"{platform.url}/async-function/hello")
        with lock:
            if response.status_code == 202:
                accepted.append(response.headers["x-call-id"])
            else:
                refused[response.status_code] += 1
        return httpx.Response(200, text="submitted")

    with Load(submit, threads=2) as load:
        wait_for(lambda: len(accepted) >= 30, 60, "accepted async calls")
        platform.node.kubectl("delete", "pod", "lf-nats-1", "-n", SYSTEM, "--grace-period=0", "--force")
        mark = len(accepted)
        wait_for(lambda: len(accepted) >= mark + 30, 120, "async calls accepted after the kill")
    assert not [f for f in load.failures if "submitted" not in f], load.failures[:5]
    assert set(refused) <= {503}, refused

    pending = set(accepted)
    states: Counter[str] = Counter()

    def all_done() -> bool:
        with httpx.Client(timeout=10) as client:
            for call_id in sorted(pending):
                status = client.get(f"{platform.url}/invocations/{call_id}").json().get("status")
                if status in ("succeeded", "failed", "dead", "cancelled"):
                    states[status] += 1
                    pending.discard(call_id)
        return not pending

    wait_for(all_done, 240, f"{len(accepted)} accepted calls finishing", interval=2)
    assert states == Counter({"succeeded": len(accepted)}), states
    platform.node.kubectl("wait", "--for=condition=Ready", "pod/lf-nats-1", "-n", SYSTEM, "--timeout=180s", timeout=190)


def test_a_function_pod_cannot_reach_redis_or_postgres_but_reaches_nats(platform: Platform) -> None:
    """The chart's egress policy for function pods, enforced by kube-router: a pod carrying the function labels
    (any code could run in one) dials NATS, but neither redis-server nor PostgreSQL."""
    node = platform.node
    labels = {"app.kubernetes.io/component": "function", "app.kubernetes.io/managed-by": "lf-operator"}
    pod = probe_pod("hostile", node.probe.ref, labels)
    pod["spec"]["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    pod["spec"]["containers"][0]["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    node.apply({**pod, "metadata": {**pod["metadata"], "namespace": "default"}})
    try:
        wait_ready(node, "default", "hostile")
        code, out = exec_probe(node, "default", "hostile", "dial", f"lf-nats.{SYSTEM}.svc:4222")
        assert code == 0, out
        for service, port in (("lf-redis", 6379), ("lf-postgres", 5432)):
            # The server listens (the node may reach every pod), so what stops the function pod is the policy:
            # kube-router rejects its packets (refused, or a timeout where they are dropped) on the Service's
            # address, which DNS did resolve.
            address = platform.get("service", service)["spec"]["clusterIP"]
            with socket.create_connection((address, port), timeout=5):
                pass
            code, out = exec_probe(node, "default", "hostile", "dial", f"{service}.{SYSTEM}.svc:{port}")
            assert code != 0, f"a function pod reached {service}: {out}"
            assert any(f"{address}:{port}: {why}" in out for why in ("connect: connection refused", "i/o timeout")), out
    finally:
        node.kubectl("delete", "pod", "hostile", "-n", "default", "--grace-period=0", "--wait=false", check=False)


def test_deleted_function_answers_404(platform: Platform) -> None:
    platform.node.kubectl("delete", "function", "hello", "-n", "default")
    _answer(platform, "hello", lambda r: r.status_code == 404, timeout=60)
