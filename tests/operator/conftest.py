"""A real control plane for the operator's tests: etcd + kube-apiserver from tools/k8s (built once, cached), the
CRDs installed, the operator running as its ServiceAccount under the Helm chart's RBAC, a real nats-server (the session
fixture of tests/conftest.py) and a real ingestor (tests/harness). There is no kubelet or controller-manager: tests
start a function's runtime themselves from its Deployment, and patch Deployment status to stand in for the
controller."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from lf_controlplane.natsserver import NatsServer, free_port

from tests.harness.ingestor import Ingestor, start_ingestor
from tests.harness.processes import stop_process
from tests.harness.runtime import RuntimeProcess
from tools.helm import chart
from tools.k8s import build
from tools.k8s.cluster import Cluster

REPO = Path(__file__).resolve().parents[2]
PUBLIC_URL = "http://lf-ingestor.test"
OPERATOR_NAMESPACE = "lf-system"


@dataclass
class Kubectl:
    cluster: Cluster
    binary: str

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.binary, f"--kubeconfig={self.cluster.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr}")
        return done

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        done = self("get", kind, name, "-n", namespace, "-o", "json", check=False)
        if done.returncode != 0:
            if "NotFound" in done.stderr:
                return None
            raise AssertionError(done.stderr)
        return dict(json.loads(done.stdout))

    def items(self, kind: str, namespace: str, *selector: str) -> list[dict[str, Any]]:
        done = self("get", kind, "-n", namespace, "-o", "json", *selector)
        return list(json.loads(done.stdout)["items"])


@pytest.fixture(scope="session")
def k8s_bin_dir() -> Path:
    """The built binaries (`make test-operator` builds them first; a cold build here takes minutes)."""
    return build.ensure()


@pytest.fixture(scope="session")
def cluster(k8s_bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = Cluster(k8s_bin_dir, tmp_path_factory.mktemp("k8s")).start()
    try:
        started.install_crds(kubectl=str(build.kubectl_path()))
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def kubectl(cluster: Cluster) -> Kubectl:
    return Kubectl(cluster, str(build.kubectl_path()))


@pytest.fixture(scope="session")
def operator_kubeconfig(cluster: Cluster, kubectl: Kubectl) -> Path:
    """A kubeconfig of the operator's ServiceAccount in lf-system, bound by the chart's RBAC (least privilege:
    templates/operator/rbac.yaml, rendered by the cached helm), the leader-election Lease's Role included."""
    kubectl("create", "namespace", OPERATOR_NAMESPACE)
    kubectl("label", "namespace", OPERATOR_NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")
    rbac = chart.template(namespace=OPERATOR_NAMESPACE, show_only=["templates/operator/rbac.yaml"])
    kubectl("apply", "--server-side", "-f", "-", input=rbac)
    return cluster.user_kubeconfig(
        "system:serviceaccount:lf-system:lf-operator", groups=("system:serviceaccounts", "system:authenticated")
    )


@dataclass
class OperatorProcess:
    """`lf operator` as a process, restartable."""

    kubeconfig: Path
    nats_url: str
    log_dir: Path
    process: subprocess.Popen[bytes] | None = None
    runs: int = 0
    env: dict[str, str] = field(default_factory=dict)
    metrics_port: int = field(default_factory=lambda: free_port())
    args: tuple[str, ...] = ()
    """Arguments after `lf operator` (e.g. `-n NS`, `--liveness URL`)."""

    @property
    def metrics_url(self) -> str:
        """The operator's own /metrics (LF_OPERATOR_METRICS_PORT; the same port across restarts)."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> OperatorProcess:
        self.runs += 1
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "LF_NATS_URL": self.nats_url,
            "LF_PUBLIC_URL": PUBLIC_URL,
            "LF_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "LF_OPERATOR_METRICS_HOST": "127.0.0.1",
            **self.env,
        }
        with (self.log_dir / f"operator-{self.runs}.log").open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lf_controlplane", "operator", *self.args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def logs(self, run: int | None = None) -> str:
        """The output of every run, or of run `run` (1 is the first start)."""
        pattern = "operator-*.log" if run is None else f"operator-{run}.log"
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob(pattern)))

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=30)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@pytest.fixture(scope="session")
def operator(
    operator_kubeconfig: Path, nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(operator_kubeconfig, nats_server.url, tmp_path_factory.mktemp("operator")).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def ingestor(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingestor]:
    log = tmp_path_factory.mktemp("ingestor") / "ingestor.log"
    started = start_ingestor(nats_server.url, log, ready_timeout=60, LF_DRAIN_TIMEOUT="5s")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def namespace(kubectl: Kubectl) -> str:
    """A fresh namespace per test (namespaces never finish deleting without a controller-manager)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    return name


def start_runtime(kubectl: Kubectl, name: str, namespace: str, workdir: Path) -> RuntimeProcess:
    """A function replica started the way a kubelet would: the Deployment's command and env, its ConfigMap's files
    mounted (here: written) at LF_FUNCTION_DIR, the pod's metrics and readiness ports moved to free loopback ports
    (its `metrics_url`; LF_HEALTH_PORT in its `env`). Not waited for."""
    deployment = kubectl.get("deployment", name, namespace)
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    code_dir = workdir / "code"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    for volume in pod["volumes"]:
        if "configMap" in volume:
            configmap = kubectl.get("configmap", volume["configMap"]["name"], namespace)
            assert configmap is not None
            assert mounts[volume["name"]] == env["LF_FUNCTION_DIR"]
            for item in volume["configMap"]["items"]:
                target = code_dir / item["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(configmap["data"][item["key"]])
    tmp = workdir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env.update({"LF_FUNCTION_DIR": str(code_dir), "HOME": str(tmp), "TMPDIR": str(tmp), "LF_SECRETS_DIR": ""})
    if "LF_METRICS_PORT" in env:  # the pod's port 9091 on all addresses becomes a free loopback port
        env.update({"LF_METRICS_PORT": str(free_port()), "LF_METRICS_HOST": "127.0.0.1"})
    if "LF_HEALTH_PORT" in env:  # so does the readiness port 8081 (LF_HEALTH_PORT, where the kubelet probes)
        env.update({"LF_HEALTH_PORT": str(free_port()), "LF_HEALTH_HOST": "127.0.0.1"})
    command = list(container["command"])
    assert command[:3] == ["python", "-m", "lf_runtime"]
    return RuntimeProcess.start({"PATH": os.environ["PATH"], **env}, [sys.executable, *command[1:]], ready_timeout=None)
