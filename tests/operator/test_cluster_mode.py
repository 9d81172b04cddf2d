"""HTTP Triggers served by the ingestor, an operator restart that reconciles without duplicates, `lf deploy`,
`lf list`/`describe`/`delete` on the cluster. (The Helm chart's server-side dry run is tests/chart/.)"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from lf_controlplane.natsserver import NatsServer
from lf_core.asynccalls import triggered
from lf_core.bus import jetstream
from lf_core.contract.triggerstate import TriggerState

from tests.harness.ingestor import Ingestor
from tests.harness.routes import route_entry, route_revision
from tests.harness.waiting import wait_for
from tests.operator.conftest import REPO, Kubectl, OperatorProcess, start_runtime
from tests.operator.test_functions import lf_dry_run, mark_deployment_ready, reconciled
from tools.k8s.cluster import Cluster

pytestmark = [pytest.mark.operator, pytest.mark.timeout(300)]

EXAMPLES = REPO / "examples"


def trigger(name: str, namespace: str, **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "litefunctions.io/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def test_http_trigger_is_served_at_its_path(
    kubectl: Kubectl,
    operator: OperatorProcess,
    ingestor: Ingestor,
    nats_server: NatsServer,
    namespace: str,
    tmp_path: Path,
) -> None:
    kubectl("apply", "-f", "-", input=lf_dry_run(EXAMPLES / "echo", namespace))
    reconciled(kubectl, "echo", namespace)
    http = {"path": f"/{namespace}/items/{{id}}", "methods": ["POST"]}
    kubectl("apply", "-f", "-", input=trigger("echo-api", namespace, function="echo", http=http))
    status = wait_for(
        lambda: (
            ((kubectl.get("trigger", "echo-api", namespace) or {}).get("status") or {}).get("phase") == "Ready"
            and kubectl.get("trigger", "echo-api", namespace)
        ),
        60,
        "the trigger Ready",
    )["status"]
    assert status["route"] == f"tr.{namespace}.echo-api"
    entry = route_entry(nats_server.url, f"tr.{namespace}.echo-api")
    assert entry is not None and entry.pop("created")  # the Trigger's creationTimestamp: when it claimed its path
    assert entry == {
        "kind": "http",
        "namespace": namespace,
        "name": "echo-api",
        "function": "echo",
        "path": f"/{namespace}/items/{{id}}",
        "host": "",
        "methods": ["POST"],
    }
    runtime = start_runtime(kubectl, "echo", namespace, tmp_path)
    try:
        url = f"{ingestor.url}/{namespace}/items/42"
        response = wait_for(
            lambda: (r := httpx.post(url, json={"qty": 3}, timeout=5)).status_code == 200 and r, 60, f"200 from {url}"
        )
        assert (response.json()["path"], response.json()["json"]) == (f"/{namespace}/items/42", {"qty": 3})
        assert httpx.get(url, timeout=5).status_code == 405
    finally:
        runtime.stop()
    kubectl("delete", "trigger", "echo-api", "-n", namespace, "--timeout=60s")
    assert route_entry(nats_server.url, f"tr.{namespace}.echo-api") is None
    wait_for(lambda: httpx.post(url, json={}, timeout=5).status_code == 404, 10, "404 once the trigger is gone")


def test_cron_and_nats_triggers_become_dispatcher_entries_with_their_state_in_status(
    kubectl: Kubectl, operator: OperatorProcess, nats_server: NatsServer, namespace: str
) -> None:
    """Issue 15: a cron Trigger is an `et.` entry the dispatcher runs; its status takes the state the dispatcher
    records in LF_TRIGGERS (lastFire, nextFire, lastError); a NATS Trigger outside its namespace is refused."""
    cron = {"schedule": "0 3 * * *", "concurrencyPolicy": "Forbid"}
    kubectl("apply", "-f", "-", input=trigger("nightly", namespace, function="hello", cron=cron))
    status = wait_for(lambda: (kubectl.get("trigger", "nightly", namespace) or {}).get("status"), 60, "a status")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (status["phase"], ready["reason"], status["route"]) == (
        "Waiting",
        "FunctionNotFound",
        f"et.{namespace}.nightly",
    )
    entry = route_entry(nats_server.url, f"et.{namespace}.nightly")
    assert entry is not None and entry["kind"] == "cron" and entry["cron"]["concurrencyPolicy"] == "Forbid"
    assert route_entry(nats_server.url, f"tr.{namespace}.nightly") is None

    state = TriggerState(namespace=namespace, name="nightly", kind="cron", last_fire=1.8e9, next_fire=1.8e9 + 86400,
                         last_error="run skipped (concurrencyPolicy Forbid)")  # fmt: skip
    put_trigger_state(nats_server.url, state)
    status = wait_for(
        lambda: (s := (kubectl.get("trigger", "nightly", namespace) or {}).get("status") or {}).get("lastFire") and s,
        60,
        "lastFire in the status",
    )
    assert (status["lastFire"], status["nextFire"]) == ("2027-01-15T08:00:00Z", "2027-01-16T08:00:00Z")
    assert status["lastError"] == "run skipped (concurrencyPolicy Forbid)"

    kubectl("apply", "-f", "-", input=trigger("spy", namespace, function="hello", nats={"subject": "lf.invoke.>"}))
    status = wait_for(lambda: (kubectl.get("trigger", "spy", namespace) or {}).get("status"), 60, "a status")
    valid = next(c for c in status["conditions"] if c["type"] == "Valid")
    assert (valid["status"], valid["reason"]) == ("False", "InvalidSpec")
    assert f"may only use subjects under ev.{namespace}.>" in valid["message"]
    assert route_entry(nats_server.url, f"et.{namespace}.spy") is None

    kubectl("delete", "trigger", "nightly", "-n", namespace)
    wait_for(lambda: route_entry(nats_server.url, f"et.{namespace}.nightly") is None, 30, "the entry to go")
    refused = kubectl("apply", "-f", "-", input=trigger("both", namespace, function="hello",
                      cron={"schedule": "0 3 * * *"}, http={"path": "/x"}), check=False)  # fmt: skip
    assert refused.returncode != 0 and "exactly one of http, cron, nats" in refused.stderr


def put_trigger_state(nats_url: str, state: TriggerState) -> None:
    async def put() -> None:
        nc = await nats.connect(nats_url)
        try:
            request = jetstream.nats_py_requester(nc)
            await triggered.ensure_state_bucket(request)
            await triggered.write_state(request, f"{state.namespace}.{state.name}", state)
        finally:
            await nc.close()

    asyncio.run(put())


def test_operator_restart_reconciles_without_duplicates(
    kubectl: Kubectl, operator: OperatorProcess, nats_server: NatsServer, namespace: str
) -> None:
    kubectl("apply", "-f", "-", input=lf_dry_run(EXAMPLES / "hello", namespace))
    reconciled(kubectl, "hello", namespace)
    mark_deployment_ready(kubectl, "hello", namespace)
    wait_for(lambda: (kubectl.get("function", "hello", namespace) or {})["status"]["phase"] == "Ready", 30, "Ready")
    before = {kind: kubectl.get(kind, name, namespace) for kind, name in
              (("deployment", "hello"), ("configmap", "hello-source"), ("networkpolicy", "hello"))}  # fmt: skip
    key = f"fn.{namespace}.hello"
    sequence = route_revision(nats_server.url, key)

    operator.stop()
    kubectl("apply", "-f", "-", input=lf_dry_run(EXAMPLES / "slow", namespace))  # created while it is down
    operator.start()
    reconciled(kubectl, "slow", namespace)  # the restarted operator caught up
    wait_for(lambda: f"function {namespace}/hello reconciled" in operator.logs(run=operator.runs), 60, "hello resumed")
    time.sleep(1)  # what a resume would rewrite, it has written by now

    for kind, obj in before.items():
        assert obj is not None
        now = kubectl.get(kind, obj["metadata"]["name"], namespace)
        assert now is not None
        assert now["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"], f"{kind} was rewritten"
        assert len(now["metadata"]["ownerReferences"]) == 1
    assert len(kubectl.items("deployments", namespace, "-l", "litefunctions.io/function=hello")) == 1
    assert route_revision(nats_server.url, key) == sequence, "the unchanged route entry was written again"
    assert (kubectl.get("function", "hello", namespace) or {})["status"]["phase"] == "Ready"


def lf(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "NO_COLOR": "1", "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "lf_controlplane", *args], env=env, capture_output=True, text=True, timeout=120
    )
    if check and done.returncode != 0:
        raise AssertionError(f"lf {' '.join(args)} failed ({done.returncode}): {done.stdout}{done.stderr}")
    return done


def test_lf_deploy_list_describe_delete(
    cluster: Cluster, kubectl: Kubectl, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    deploying = subprocess.Popen(
        [sys.executable, "-m", "lf_controlplane", "deploy", str(EXAMPLES / "hello"), "-n", namespace, "--timeout=90"],
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "NO_COLOR": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        reconciled(kubectl, "hello", namespace)
        mark_deployment_ready(kubectl, "hello", namespace)  # the Deployment controller's part
        out, err = deploying.communicate(timeout=90)
    finally:
        if deploying.poll() is None:
            deploying.kill()
    assert deploying.returncode == 0, err
    assert "hello is ready" in out and f"/function/hello.{namespace}" in out

    listed = json.loads(lf(cluster, "list", "--cluster", "-n", namespace, "-o", "json").stdout)
    assert [(f["name"], f["phase"], f["ready"]) for f in listed] == [("hello", "Ready", 1)]
    described = lf(cluster, "describe", "hello", "-n", namespace).stdout
    assert "handler.py" in described and "phase: Ready" in described and "GREETING" in described
    # lf list without an lf dev running here goes to the cluster of the context
    state_dir = tmp_path / "no-lf-dev"
    assert "hello" in lf(cluster, "list", "-n", namespace, "--state-dir", str(state_dir)).stdout

    assert "deleted" in lf(cluster, "delete", "hello", "-n", namespace).stdout
    wait_for(lambda: kubectl.get("function", "hello", namespace) is None, 60, "the Function gone")
    missing = lf(cluster, "delete", "hello", "-n", namespace, check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_lf_deploy_fails_fast_on_an_invalid_spec(
    cluster: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    folder = tmp_path / "img"
    folder.mkdir()
    (folder / "function.yaml").write_text(
        "apiVersion: litefunctions.io/v1alpha1\nkind: Function\nmetadata: {name: img}\n"
        "spec: {source: {git: {url: 'https://example.com/x.git'}}}\n"
    )
    done = lf(cluster, "deploy", str(folder), "-n", namespace, "--timeout=60", check=False)
    assert done.returncode == 1
    assert "only inline files" in done.stderr
