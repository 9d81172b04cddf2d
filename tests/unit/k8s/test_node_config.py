"""tools/k8s/node.py's checks of its settings and its state file (no processes: the node itself is
tests/cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.k8s.node import HostSnapshot, Node, NodeError, NodeState, RegistryAccess


def make(tmp_path: Path, **settings: str) -> Node:
    return Node(tmp_path / "bin", tmp_path / "work", node_ip="192.0.2.2", **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("host", "user", "password", "message"),
    [
        ("http://127.0.0.1:5000", "", "", "HOST:PORT without a scheme"),
        ("127.0.0.1", "", "", "HOST:PORT without a scheme"),
        ("127.0.0.1:5000", "lf", "", "both a username and a password"),
    ],
)
def test_registry_access_refuses_what_containerd_could_not_use(
    host: str, user: str, password: str, message: str
) -> None:
    with pytest.raises(NodeError, match=message):
        RegistryAccess(host, user, password)


def test_overlapping_pod_and_service_ranges_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="pod_cidr 10.96.0.0/16 overlaps service_cidr 10.96.0.0/24"):
        make(tmp_path, pod_cidr="10.96.0.0/16")


def test_a_bad_cidr_is_named(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="not a CIDR: '10.244.0.0/33'"):
        make(tmp_path, pod_cidr="10.244.0.0/33")


def test_a_bridge_name_longer_than_a_link_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="longer than 15 characters"):
        make(tmp_path, bridge="lf-bridge-far-too-long")


def test_cluster_dns_is_the_tenth_service_address_and_the_apiserver_serves_on_the_node_address(
    tmp_path: Path,
) -> None:
    node = make(tmp_path, service_cidr="10.97.0.0/24")
    assert node.dns_ip == "10.97.0.10"
    assert node.cluster.address == "192.0.2.2"
    assert node.cluster.service_accounts


def test_the_state_file_round_trips_and_a_broken_one_is_named(tmp_path: Path) -> None:
    before = HostSnapshot({"net/ipv4/ip_forward": "0"}, ["iptables/filter/INPUT"], [], [], {"/run/containerd": False})
    state = NodeState(str(tmp_path), "lfbr0", str(tmp_path / "c.sock"), before, 42, {"kubelet": 7}, "kc")
    path = tmp_path / "node.json"
    state.write(path)
    assert NodeState.read(path) == state
    path.write_text("{}")
    with pytest.raises(NodeError, match=f"{path} is not a node state file"):
        NodeState.read(path)
