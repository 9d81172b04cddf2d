"""One real single-node cluster per session (tools/k8s/node.py): etcd, kube-apiserver, controller-manager,
scheduler, containerd + runc, kubelet, kube-proxy, CoreDNS, kube-router's NetworkPolicy controller and
metrics-server, with a real Zot (tools/registry) that containerd pulls from over plain HTTP with basic auth.

Needs root and the Debian packages runc, containernetworking-plugins, iptables, ipset, conntrack (apache2-utils for
Zot's htpasswd). The binaries are built once into ~/.cache/lf/ (`python -m tools.k8s build --node`; minutes cold).
Tests marked `node_teardown` run after every other test of the session: they stop the node and check the machine.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from tools.k8s import build
from tools.k8s.node import Node, RegistryAccess
from tools.registry import build as zot_build
from tools.registry.zot import Zot


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Teardown checks last: they stop the session's node."""
    items.sort(key=lambda item: item.get_closest_marker("node_teardown") is not None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "node_teardown: stops the session's node (run last, tests/cluster only)")


@pytest.fixture(scope="session")
def zot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zot]:
    registry = Zot(zot_build.ensure(), tmp_path_factory.mktemp("zot")).start()
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="session")
def node(zot: Zot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """The session's node; its measurements (start-up steps, teardown, RSS) go to node-run.json in the cache."""
    user, password = zot.credentials
    started = Node(
        build.ensure_node(),
        tmp_path_factory.mktemp("node"),
        registry=RegistryAccess(zot.address, user, password),
    ).start()
    try:
        yield started
    finally:
        if "teardown" not in started.timings:
            started.stop()
        record = build.cache_dir() / "node-run.json"
        record.write_text(json.dumps({"timings": started.timings, "rss_kib": started.measured_rss}, indent=2) + "\n")


@pytest.fixture
def namespace(node: Node) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    node.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        if "teardown" not in node.timings:
            node.kubectl("delete", "namespace", name, "--wait=false", check=False)
