"""Two operator replicas, one leader (LF_LEADER_ELECTION, a coordination.k8s.io/v1 Lease) against the real
kube-apiserver, each under the chart's RBAC: only the holder reconciles, the standby is live (its liveness URL
answers) and does nothing, a leader killed outright (no release: a dead pod) is replaced within the lease
duration, and a leader stopped cleanly releases the Lease."""

from __future__ import annotations

import datetime as dt
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from lf_controlplane.natsserver import NatsServer, free_port

from tests.harness.processes import stop_process
from tests.harness.waiting import wait_for
from tests.operator.conftest import OPERATOR_NAMESPACE, Kubectl, OperatorProcess
from tests.operator.test_functions import EXAMPLES, lf_dry_run

pytestmark = [pytest.mark.operator, pytest.mark.timeout(300)]

LEASE = "lf-operator"  # the name the chart's Role grants get/update on
LEASE_DURATION_S = 6
RENEW_DEADLINE_S = 4
RETRY_PERIOD_S = 1


def _candidate(
    identity: str, kubeconfig: Path, nats_url: str, log_dir: Path, namespace: str
) -> tuple[OperatorProcess, str]:
    """One replica, watching only the test's namespace: a new leader resumes every Function it watches, and the
    session's apiserver holds the other tests' Functions too (their resumption once made the takeover time out)."""
    port = free_port()
    proc = OperatorProcess(
        kubeconfig,
        nats_url,
        log_dir,
        env={
            "LF_LEADER_ELECTION": "true",
            "LF_LEADER_ELECTION_NAMESPACE": OPERATOR_NAMESPACE,
            "LF_LEADER_ELECTION_ID": identity,
            "LF_LEADER_ELECTION_LEASE": LEASE,
            "LF_LEADER_ELECTION_LEASE_DURATION": str(LEASE_DURATION_S),
            "LF_LEADER_ELECTION_RENEW_DEADLINE": str(RENEW_DEADLINE_S),
            "LF_LEADER_ELECTION_RETRY_PERIOD": str(RETRY_PERIOD_S),
        },
        args=("-n", namespace, "--liveness", f"http://127.0.0.1:{port}/healthz"),
    )
    return proc, f"http://127.0.0.1:{port}/healthz"


def _lease(kubectl: Kubectl) -> dict[str, Any]:
    return (kubectl.get("lease", LEASE, OPERATOR_NAMESPACE) or {}).get("spec") or {}


def _holder(kubectl: Kubectl) -> str:
    return str(_lease(kubectl).get("holderIdentity") or "")


@pytest.fixture
def candidates(
    operator_kubeconfig: Path,
    nats_server: NatsServer,
    namespace: str,
    kubectl: Kubectl,
    tmp_path: Path,
) -> Iterator[list[tuple[OperatorProcess, str]]]:
    # A Lease left by an earlier run would make the first candidate wait out its duration: start from none.
    kubectl("delete", "lease", LEASE, "-n", OPERATOR_NAMESPACE, "--ignore-not-found")
    made: list[tuple[OperatorProcess, str]] = []
    for identity in ("op-a", "op-b"):
        folder = tmp_path / identity
        folder.mkdir()
        made.append(_candidate(identity, operator_kubeconfig, nats_server.url, folder, namespace))
    try:
        yield made
    finally:
        for proc, _ in made:
            proc.stop()


def _reconciled_by(proc: OperatorProcess, name: str, namespace: str) -> bool:
    return f"function {namespace}/{name} reconciled" in proc.logs()


def _wait_reconciled(proc: OperatorProcess, name: str, namespace: str) -> None:
    try:
        # 30 s: an operator narrowed with -n once spent ~54 s retrying a namespace list its RBAC does not grant
        wait_for(lambda: _reconciled_by(proc, name, namespace), 30, f"{name} reconciled by the leader")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- its log:\n{proc.logs()[-4000:]}") from None


def test_one_leader_reconciles_and_the_standby_takes_over_when_it_dies(
    candidates: list[tuple[OperatorProcess, str]], kubectl: Kubectl, namespace: str
) -> None:
    (first, first_health), (second, second_health) = candidates
    first.start()
    wait_for(lambda: _holder(kubectl) == "op-a", 60, "op-a to take the free Lease")
    second.start()
    wait_for(lambda: "standing by" in second.logs(), 60, "op-b to stand by")
    # the standby is live for its kubelet (it serves the liveness URL itself) while the leader's kopf serves its own
    assert wait_for(lambda: httpx.get(second_health, timeout=2).status_code == 200, 30, "the standby's liveness")
    assert wait_for(lambda: httpx.get(first_health, timeout=2).status_code == 200, 60, "the leader's liveness")

    kubectl("apply", "-f", "-", input=lf_dry_run(EXAMPLES / "hello", namespace))
    _wait_reconciled(first, "hello", namespace)
    deployment = kubectl.get("deployment", "hello", namespace)
    assert deployment is not None, "the leader applied no Deployment"
    time.sleep(RETRY_PERIOD_S * 3)  # give a misbehaving standby the time to act too, then look at what it did
    assert not _reconciled_by(second, "hello", namespace), second.logs()
    assert "leading as" not in second.logs()
    assert _holder(kubectl) == "op-a"
    lease = _lease(kubectl)
    assert lease["leaseDurationSeconds"] == LEASE_DURATION_S
    renewed = lease["renewTime"]
    wait_for(lambda: _lease(kubectl)["renewTime"] != renewed, 10, "the leader to renew the Lease")

    # the leader's pod dies: no SIGTERM, no release; the standby may take over only once the lease has run out
    assert first.process is not None
    killed_at = time.monotonic()
    stop_process(first.process, sig=signal.SIGKILL)
    wait_for(lambda: _holder(kubectl) == "op-b", LEASE_DURATION_S + 10, "op-b to take the Lease over")
    took = time.monotonic() - killed_at
    assert took <= LEASE_DURATION_S + 2 * RETRY_PERIOD_S + 2, f"took {took:.1f}s"
    assert took >= LEASE_DURATION_S - RETRY_PERIOD_S - 1, f"took the Lease {took:.1f}s after: before it ran out"
    assert _lease(kubectl)["leaseTransitions"] == 1

    kubectl("apply", "-f", "-", input=lf_dry_run(EXAMPLES / "echo", namespace))
    _wait_reconciled(second, "echo", namespace)
    assert kubectl.get("deployment", "echo", namespace) is not None

    # a clean stop (SIGTERM: a rollout, a drained node) gives the Lease back at once
    assert second.process is not None
    assert stop_process(second.process, sig=signal.SIGTERM, timeout=30) == 0, second.logs()
    assert _holder(kubectl) == "", _lease(kubectl)
    assert "released the lease" in second.logs()


def test_the_standby_does_not_take_a_live_lease(
    candidates: list[tuple[OperatorProcess, str]], kubectl: Kubectl
) -> None:
    """A Lease renewed by someone else is never taken, however long the candidate waits."""
    (first, _), _ = candidates
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LEASE, "namespace": OPERATOR_NAMESPACE},
        "spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": LEASE_DURATION_S, "renewTime": stamp},
    }
    kubectl("apply", "--server-side", "-f", "-", input=json.dumps(lease))
    first.start()
    wait_for(lambda: "standing by" in first.logs(), 60, "op-a to stand by")
    deadline = time.monotonic() + 2 * LEASE_DURATION_S
    while time.monotonic() < deadline:  # keep the holder's record fresh, as a live leader would
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        kubectl("patch", "lease", LEASE, "-n", OPERATOR_NAMESPACE, "--type=merge",
                "-p", json.dumps({"spec": {"renewTime": stamp}}))  # fmt: skip
        assert _holder(kubectl) == "someone-else"
        time.sleep(RETRY_PERIOD_S)
    assert "leading as" not in first.logs()
    # once the other holder stops renewing, op-a takes the Lease within its duration
    wait_for(lambda: _holder(kubectl) == "op-a", LEASE_DURATION_S + 10, "op-a to take the abandoned Lease")


def test_a_leader_that_finds_another_holder_stops_at_once(
    candidates: list[tuple[OperatorProcess, str]], kubectl: Kubectl
) -> None:
    """Two leaders must never overlap: one that reads someone else on its Lease stops reconciling and exits 1
    (its pod restarts as a standby) without waiting out its renew deadline."""
    (first, _), _ = candidates
    first.start()
    wait_for(lambda: _holder(kubectl) == "op-a" and "leading as op-a" in first.logs(), 60, "op-a leading")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    kubectl("patch", "lease", LEASE, "-n", OPERATOR_NAMESPACE, "--type=merge",
            "-p", json.dumps({"spec": {"holderIdentity": "intruder", "renewTime": stamp}}))  # fmt: skip
    assert first.process is not None
    process = first.process
    wait_for(lambda: process.poll() is not None, RENEW_DEADLINE_S + 5, "op-a to stop")  # + kopf's own shutdown
    assert process.returncode == 1, first.logs()
    assert "lost the lease lf-system/lf-operator to intruder" in first.logs()
    assert _holder(kubectl) == "intruder"  # it did not release (or retake) what it no longer held
