"""Pods of lf-probe (tools/k8s/testimages/probe) for the cluster tests, and kubectl exec into them."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from tools.k8s.node import Node


def probe_pod(name: str, image: str, labels: dict[str, str], *, pull: str = "Never") -> dict[str, Any]:
    """A pod running lf-probe's HTTP server on 8080, Ready when it answers."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [probe_container(image, pull)]},
    }


def probe_container(image: str, pull: str = "Never") -> dict[str, Any]:
    return {
        "name": "probe",
        "image": image,
        "imagePullPolicy": pull,
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
    }


def get(node: Node, kind: str, name: str, namespace: str) -> dict[str, Any]:
    return dict(json.loads(node.kubectl("get", kind, name, "-n", namespace, "-o", "json")))


def wait_ready(node: Node, namespace: str, *names: str, timeout: int = 120) -> None:
    for name in names:
        node.kubectl(
            "wait",
            "--for=condition=Ready",
            f"pod/{name}",
            "-n",
            namespace,
            f"--timeout={timeout}s",
            timeout=timeout + 10,
        )


def exec_probe(node: Node, namespace: str, pod: str, *args: str) -> tuple[int, str]:
    """`/lf-probe ARGS` inside `pod`: (exit code, stdout + stderr)."""
    done = subprocess.run(
        [
            str(node.bin_dir / "kubectl"),
            f"--kubeconfig={node.kubeconfig}",
            "exec",
            "-n",
            namespace,
            pod,
            "--",
            "/lf-probe",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr
