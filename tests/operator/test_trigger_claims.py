"""Issue 14, item 2, as attacks through the operator (real kube-apiserver) and a real ingestor: a Trigger of
namespace B cannot take namespace A's host, nor the platform's own paths (A's async submit and status calls)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from lf_controlplane.natsserver import NatsServer

from tests.harness.ingestor import Ingestor
from tests.harness.routes import route_entry
from tests.harness.waiting import wait_for
from tests.operator.conftest import REPO, Kubectl, OperatorProcess, start_runtime
from tests.operator.test_cluster_mode import trigger
from tests.operator.test_functions import lf_dry_run, reconciled

pytestmark = [pytest.mark.operator, pytest.mark.timeout(300)]

ECHO = REPO / "examples" / "echo"


def conditions(kubectl: Kubectl, name: str, namespace: str) -> dict[str, dict[str, Any]]:
    status = (kubectl.get("trigger", name, namespace) or {}).get("status") or {}
    return {c["type"]: c for c in status.get("conditions") or []}


def settled(kubectl: Kubectl, name: str, namespace: str, valid: str, kind: str = "Valid") -> dict[str, dict[str, Any]]:
    """The Trigger's conditions once its `kind` condition's status is `valid`."""
    found: dict[str, dict[str, Any]] = wait_for(
        lambda: (now := conditions(kubectl, name, namespace)).get(kind, {}).get("status") == valid and now,
        60,
        f"trigger {namespace}/{name} {kind}={valid}",
    )
    return found


@pytest.fixture
def other_namespace(kubectl: Kubectl) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    return name


def test_a_host_claimed_by_namespace_a_is_refused_to_namespace_b_and_keeps_routing_to_a(
    kubectl: Kubectl,
    operator: OperatorProcess,
    ingestor: Ingestor,
    nats_server: NatsServer,
    namespace: str,
    other_namespace: str,
    tmp_path: Path,
) -> None:
    victim, attacker = namespace, other_namespace
    host = f"shop-{uuid.uuid4().hex[:8]}.example.com"
    for ns in (victim, attacker):
        kubectl("apply", "-f", "-", input=lf_dry_run(ECHO, ns))
        reconciled(kubectl, "echo", ns)
    http = {"host": host, "path": "/{*rest}"}
    kubectl("apply", "-f", "-", input=trigger("site", victim, function="echo", http=http))
    assert settled(kubectl, "site", victim, "True", "Ready")["Ready"]["reason"] == "Routed"
    kubectl("apply", "-f", "-", input=trigger("grab", attacker, function="echo", http={**http, "path": "/checkout"}))

    refused = settled(kubectl, "grab", attacker, "False")
    assert refused["Valid"]["reason"] == "RouteConflict"
    assert f"host {host!r} belongs to namespace {victim!r}" in refused["Valid"]["message"]
    assert refused["Ready"]["status"] == "False"
    assert route_entry(nats_server.url, f"tr.{attacker}.grab") is None
    assert (route_entry(nats_server.url, f"tr.{victim}.site") or {}).get("created")

    runtime = start_runtime(kubectl, "echo", victim, tmp_path)  # only A's replica runs: B's would be 503
    try:
        url = f"{ingestor.url}/checkout"
        response = wait_for(
            lambda: (r := httpx.get(url, headers={"Host": host}, timeout=5)).status_code == 200 and r,
            60,
            f"200 from {host}/checkout",
        )
        assert response.json()["path"] == "/checkout"
    finally:
        runtime.stop()

    # Once A lets the host go, B's Trigger is looked at again and takes it.
    kubectl("delete", "trigger", "site", "-n", victim, "--timeout=60s")
    assert settled(kubectl, "grab", attacker, "True")["Ready"]["reason"] in ("Routed", "FunctionNotFound")
    assert (route_entry(nats_server.url, f"tr.{attacker}.grab") or {}).get("host") == host
    kubectl("delete", "trigger", "grab", "-n", attacker, "--timeout=60s")


def test_triggers_of_namespace_b_cannot_capture_namespace_as_async_api(
    kubectl: Kubectl,
    operator: OperatorProcess,
    ingestor: Ingestor,
    namespace: str,
    other_namespace: str,
) -> None:
    victim, attacker = namespace, other_namespace
    for ns in (victim, attacker):
        kubectl("apply", "-f", "-", input=lf_dry_run(ECHO, ns))
        reconciled(kubectl, "echo", ns)
    kubectl("apply", "-f", "-", input=trigger("ids", attacker, function="echo", http={"path": "/invocations/{id}"}))
    kubectl("apply", "-f", "-", input=trigger("all", attacker, function="echo", http={"path": "/{*rest}"}))
    refused = settled(kubectl, "ids", attacker, "False")["Valid"]
    assert refused["reason"] == "InvalidSpec" and "spec.http.path" in refused["message"]
    assert "belongs to the platform" in refused["message"]
    # `/{*rest}` is served (or refused if another test's namespace holds an any-host prefix): either way it must
    # not answer the platform's paths. No replica of B's echo runs, so a capture would be a 503, not a 202.
    wait_for(lambda: conditions(kubectl, "all", attacker).get("Valid"), 60, "the catch-all Trigger handled")

    submitted = httpx.post(f"{ingestor.url}/async-function/echo.{victim}/x", json={"secret": 1}, timeout=10)
    assert submitted.status_code == 202, submitted.text
    assert submitted.json()["namespace"] == victim
    call_id = submitted.json()["callId"]
    status = httpx.get(f"{ingestor.url}/invocations/{call_id}", timeout=10)
    assert status.status_code == 200 and status.json()["status"] == "queued", status.text
    kubectl("delete", "trigger", "all", "ids", "-n", attacker, "--timeout=60s")
