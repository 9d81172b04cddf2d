"""The callback keys on Kubernetes (operator/callbackkeys.py) against the real kube-apiserver, the operator running
as its ServiceAccount under the chart's RBAC and admission policy: a Function's namespace gets a key in
lf-system/lf-callback-keys (the file the dispatcher mounts) and its own copy in lf-callback-key; a rotation asked for
on that copy is carried out once, with the overlap asked; a bad request is refused naming the problem; what a tenant
edits or deletes is put back; and the operator can write no other Secret (RBAC cannot limit `create` by name; the
ValidatingAdmissionPolicy does)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lf_controlplane.natsserver import NatsServer
from lf_controlplane.operator import callbackkeys as ck
from lf_core import callbackkeys

from tests.harness.waiting import wait_for
from tests.operator.conftest import OPERATOR_NAMESPACE, Kubectl, OperatorProcess
from tests.operator.test_functions import EXAMPLES, lf_dry_run
from tools.helm import chart
from tools.k8s import build
from tools.k8s.cluster import Cluster

pytestmark = [pytest.mark.operator, pytest.mark.timeout(300)]

OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:lf-operator"


@pytest.fixture
def keys_operator(
    operator_kubeconfig: Path, nats_server: NatsServer, namespace: str, kubectl: Kubectl, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """The chart's RBAC with the test's namespace as a function namespace, and an operator keeping the callback
    keys (LF_CALLBACK_KEYS_NAMESPACE, as the chart sets it), reconciling that namespace only."""
    rbac = chart.template(
        namespace=OPERATOR_NAMESPACE,
        set_values=[f"functions.namespaces={{{namespace}}}"],
        show_only=["templates/operator/rbac.yaml"],
    )
    kubectl("apply", "--server-side", "-f", "-", input=rbac)
    proc = OperatorProcess(
        operator_kubeconfig,
        nats_server.url,
        tmp_path,
        env={"LF_CALLBACK_KEYS_NAMESPACE": OPERATOR_NAMESPACE},
        args=("-n", namespace),
    ).start()
    try:
        yield proc
    finally:
        proc.stop()
        assert "Forbidden" not in proc.logs(), proc.logs()[-3000:]


def secret_file(kubectl: Kubectl, name: str, namespace: str, file: str) -> bytes | None:
    secret = kubectl.get("secret", name, namespace)
    raw = ((secret or {}).get("data") or {}).get(file)
    return None if raw is None else base64.b64decode(raw)


def copy_annotations(kubectl: Kubectl, namespace: str) -> dict[str, str]:
    secret = kubectl.get("secret", ck.PUBLISHED_SECRET, namespace) or {}
    return dict(secret.get("metadata", {}).get("annotations") or {})


def deploy_hello(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-f", "-", input=lf_dry_run(EXAMPLES / "hello", namespace))


def published(kubectl: Kubectl, namespace: str) -> list[callbackkeys.Key]:
    """The namespace's keys once lf-callback-keys and its lf-callback-key hold the same file."""
    file = f"{namespace}.json"

    def same() -> bytes | None:
        master = secret_file(kubectl, ck.KEYS_SECRET, OPERATOR_NAMESPACE, file)
        return (
            master
            if master is not None and master == secret_file(kubectl, ck.PUBLISHED_SECRET, namespace, file)
            else None
        )

    return callbackkeys.decode(wait_for(same, 60, f"{namespace}'s callback key published"))


def request_rotation(kubectl: Kubectl, namespace: str, request: str, overlap: str) -> None:
    kubectl("annotate", "--overwrite", "secret", ck.PUBLISHED_SECRET, "-n", namespace,
            f"{ck.ROTATE}={request}", f"{ck.ROTATE_OVERLAP}={overlap}")  # fmt: skip


def test_a_functions_namespace_gets_a_key_the_dispatcher_and_receivers_read(
    kubectl: Kubectl, keys_operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    began = time.time()
    deploy_hello(kubectl, namespace)
    keys = published(kubectl, namespace)
    assert len(keys) == 1 and keys[0].not_after is None and began - 1 <= keys[0].created <= time.time()
    # The Secret's files are what the dispatcher's LF_CALLBACK_KEYS_DIR holds once mounted: its key ring signs.
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    data = secret_file(kubectl, ck.KEYS_SECRET, OPERATOR_NAMESPACE, f"{namespace}.json")
    assert data is not None
    (mounted / f"{namespace}.json").write_bytes(data)
    mounted.chmod(0o555)
    ring = callbackkeys.KeyRing(mounted, create=False)
    assert [k.id for k in ring.signing_keys(namespace)] == [keys[0].id]
    assert copy_annotations(kubectl, namespace)[ck.KEY_ID] == keys[0].id
    # A second Function (and a restart) changes nothing: the key is made once.
    kubectl("apply", "-f", "-", input=lf_dry_run(EXAMPLES / "hello", namespace).replace("name: hello", "name: hi", 1))
    keys_operator.stop()
    keys_operator.start()
    wait_for(lambda: "callback keys: kept in Secret" in keys_operator.logs(keys_operator.runs), 60, "restart")
    assert published(kubectl, namespace) == keys


def test_a_rotation_asked_on_the_namespaces_secret_is_carried_out_once(
    kubectl: Kubectl, keys_operator: OperatorProcess, namespace: str
) -> None:
    deploy_hello(kubectl, namespace)
    (old,) = published(kubectl, namespace)
    asked = time.time()
    request_rotation(kubectl, namespace, "r1", "3600")
    wait_for(lambda: copy_annotations(kubectl, namespace).get(ck.ROTATED) == "r1", 30, "rotation r1 handled")
    keys = published(kubectl, namespace)
    assert [k.id for k in keys][0] == old.id and len(keys) == 2
    ended, new = keys
    assert ended.not_after is not None and asked + 3600 - 2 <= ended.not_after <= time.time() + 3600
    assert new.not_after is None and copy_annotations(kubectl, namespace)[ck.KEY_ID] == new.id
    assert ck.ROTATE_ERROR not in copy_annotations(kubectl, namespace)
    # Both sign during the overlap (the dispatcher sends one signature per key).
    assert {k.id for k in callbackkeys.signing(keys, time.time())} == {new.id, old.id}

    # A leader that wrote lf-callback-keys and died before publishing: the next one sees the request as handled
    # (recorded in the same write as the keys) and only publishes, it does not rotate a second time.
    kubectl("annotate", "--overwrite", "secret", ck.PUBLISHED_SECRET, "-n", namespace, f"{ck.ROTATED}=older")
    wait_for(lambda: copy_annotations(kubectl, namespace).get(ck.ROTATED) == "r1", 30, "r1 published again")
    assert published(kubectl, namespace) == keys
    master = kubectl.get("secret", ck.KEYS_SECRET, OPERATOR_NAMESPACE)
    assert master is not None and master["metadata"]["annotations"][ck.HANDLED + namespace] == "r1"

    # An overlap of 0 ends every older key at once.
    request_rotation(kubectl, namespace, "r2", "0")
    wait_for(lambda: copy_annotations(kubectl, namespace).get(ck.ROTATED) == "r2", 30, "rotation r2 handled")
    now = time.time()
    assert [k.id for k in callbackkeys.signing(published(kubectl, namespace), now)] == [
        copy_annotations(kubectl, namespace)[ck.KEY_ID]
    ]


def test_a_bad_rotation_request_is_refused_naming_it(
    kubectl: Kubectl, keys_operator: OperatorProcess, namespace: str
) -> None:
    deploy_hello(kubectl, namespace)
    keys = published(kubectl, namespace)
    request_rotation(kubectl, namespace, "bad", "soon")
    wait_for(lambda: copy_annotations(kubectl, namespace).get(ck.ROTATED) == "bad", 30, "request 'bad' answered")
    error = copy_annotations(kubectl, namespace)[ck.ROTATE_ERROR]
    assert ck.ROTATE_OVERLAP in error and "'soon'" in error
    assert published(kubectl, namespace) == keys
    # What would outgrow the one Secret every namespace shares, or overflow a date, is refused too.
    for request, overlap, named in (("huge", "1e300", "30 days"), ("x" * 100, "60", "not a request id")):
        request_rotation(kubectl, namespace, request, overlap)
        wait_for(lambda r=request: copy_annotations(kubectl, namespace).get(ck.ROTATED) == r, 30, "an answer")
        assert named in copy_annotations(kubectl, namespace)[ck.ROTATE_ERROR]
    assert published(kubectl, namespace) == keys
    # Rotation after rotation keeps at most MAX_KEYS keys: the oldest go.
    for n in range(ck.MAX_KEYS + 2):
        request_rotation(kubectl, namespace, f"again-{n}", "3600")
        wait_for(lambda n=n: copy_annotations(kubectl, namespace).get(ck.ROTATED) == f"again-{n}", 30, f"again-{n}")
    kept = published(kubectl, namespace)
    assert len(kept) == ck.MAX_KEYS and kept[-1].id == copy_annotations(kubectl, namespace)[ck.KEY_ID]
    assert ck.ROTATE_ERROR not in copy_annotations(kubectl, namespace)


def test_what_a_tenant_changes_in_its_copy_is_put_back(
    kubectl: Kubectl, keys_operator: OperatorProcess, namespace: str
) -> None:
    deploy_hello(kubectl, namespace)
    keys = published(kubectl, namespace)
    forged = callbackkeys.encode([callbackkeys.new_key()])
    patch = {"data": {f"{namespace}.json": base64.b64encode(forged).decode()}}
    kubectl("patch", "secret", ck.PUBLISHED_SECRET, "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    assert published(kubectl, namespace) == keys
    kubectl("delete", "secret", ck.PUBLISHED_SECRET, "-n", namespace)
    assert published(kubectl, namespace) == keys


def as_operator(cluster: Cluster, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    kubeconfig = cluster.user_kubeconfig(OPERATOR_USER, groups=("system:serviceaccounts", "system:authenticated"))
    return subprocess.run([str(build.kubectl_path()), f"--kubeconfig={kubeconfig}", *args], input=input,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def secret_manifest(name: str, namespace: str, **extra: Any) -> str:
    obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}, **extra}
    return json.dumps(obj)


def test_the_operator_can_write_no_other_secret(
    cluster: Cluster, kubectl: Kubectl, keys_operator: OperatorProcess, namespace: str
) -> None:
    """RBAC lets the operator create Secrets in its namespace and the function namespaces (create cannot be limited
    by name); the admission policy refuses every one but the two, and any type but Opaque: a Secret of type
    service-account-token named lf-callback-key would otherwise get some ServiceAccount's token, which the operator
    could then read."""
    kubectl("create", "serviceaccount", "admin-ish", "-n", namespace)
    probe = secret_manifest("probe", namespace)
    wait_for(  # the policy (applied with the RBAC) is in force a moment after it is created
        lambda: f"lf-operator-secrets-{OPERATOR_NAMESPACE}" in as_operator(cluster, "create", "--dry-run=server",
                                                                            "-f", "-", input=probe).stderr,
        30, "the admission policy to be in force",
    )  # fmt: skip
    refused = {
        "another name": secret_manifest("other", namespace, stringData={"a": "b"}),
        "the keys' name in a function namespace": secret_manifest(ck.KEYS_SECRET, namespace),
        "the copy's name in the operator's namespace": secret_manifest(ck.PUBLISHED_SECRET, OPERATOR_NAMESPACE),
        "a token Secret": secret_manifest(
            ck.PUBLISHED_SECRET,
            namespace,
            type="kubernetes.io/service-account-token",
            metadata={
                "name": ck.PUBLISHED_SECRET,
                "namespace": namespace,
                "annotations": {"kubernetes.io/service-account.name": "admin-ish"},
            },
        ),  # fmt: skip
    }
    for what, manifest in refused.items():
        done = as_operator(cluster, "create", "-f", "-", input=manifest)
        assert done.returncode != 0, what
        assert f"lf-operator-secrets-{OPERATOR_NAMESPACE}" in done.stderr, (what, done.stderr)  # the policy's
    assert kubectl.get("secret", "other", namespace) is None
    # Reading: only the two names, and list/watch only by name.
    kubectl("create", "secret", "generic", "someones", "-n", namespace, "--from-literal=k=v")
    for args in (("get", "secret", "someones", "-n", namespace), ("get", "secrets", "-n", namespace),
                 ("get", "secrets", "-A")):  # fmt: skip
        done = as_operator(cluster, *args)
        assert done.returncode != 0 and "forbidden" in done.stderr.lower(), (args, done.stdout, done.stderr)
    deploy_hello(kubectl, namespace)
    published(kubectl, namespace)
    listed = as_operator(cluster, "get", "secrets", "-A", f"--field-selector=metadata.name={ck.PUBLISHED_SECRET}")
    assert listed.returncode == 0 and namespace in listed.stdout, listed.stderr


def lf(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    return subprocess.run([sys.executable, "-m", "lf_controlplane", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


def test_lf_callbacks_key_and_rotate_with_namespace_scoped_rights(
    cluster: Cluster, kubectl: Kubectl, keys_operator: OperatorProcess, namespace: str
) -> None:
    """A namespace's user who may get and patch its lf-callback-key, and nothing else, reads the key a receiver
    verifies with and rotates it (the operator does the writing), but cannot read anyone's keys."""
    deploy_hello(kubectl, namespace)
    (key,) = published(kubectl, namespace)
    user = f"tenant-{namespace}"
    kubectl("create", "role", "callback-key", "-n", namespace, "--verb=get,patch", "--resource=secrets",
            f"--resource-name={ck.PUBLISHED_SECRET}")  # fmt: skip
    kubectl("create", "rolebinding", "callback-key", "-n", namespace, "--role=callback-key", f"--user={user}")
    tenant = cluster.user_kubeconfig(user, groups=("system:authenticated",))

    shown = lf(tenant, "callbacks", "key", "-n", namespace, "--kube")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == [key.id, key.secret, "no", "end"]
    as_json = json.loads(lf(tenant, "callbacks", "key", "-n", namespace, "--kube", "-o", "json").stdout)
    assert [k["id"] for k in as_json["keys"]] == [key.id]

    rotated = lf(tenant, "callbacks", "rotate", "-n", namespace, "--kube", "--overlap", "1h")
    assert rotated.returncode == 0, rotated.stderr
    keys = published(kubectl, namespace)
    assert [k.id for k in keys] == [key.id, keys[1].id]
    assert f"new key {keys[1].id} signs {namespace}'s callbacks" in rotated.stdout
    assert f"key {key.id} signs too until " in rotated.stdout
    both = lf(tenant, "callbacks", "key", "-n", namespace, "--kube")
    assert {line.split()[0] for line in both.stdout.splitlines()} == {key.id, keys[1].id}

    elsewhere = lf(tenant, "callbacks", "key", "-n", OPERATOR_NAMESPACE, "--kube")
    assert elsewhere.returncode == 1 and "forbidden" in elsewhere.stderr.lower(), elsewhere.stderr
    bad = lf(tenant, "callbacks", "rotate", "-n", namespace, "--kube", "--overlap", "soon")
    assert bad.returncode == 2 and "--overlap" in bad.stderr, bad.stderr
