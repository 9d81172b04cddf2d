"""`python -m tools.k8s build|pin|start`: see the package docstring."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
from pathlib import Path

from tools.k8s import build
from tools.k8s.cluster import ClusterError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.k8s", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build kube-apiserver, etcd (and kubectl when absent) into the cache")
    b.add_argument("--kubectl", action="store_true", help="build kubectl even when the machine has one")
    b.add_argument(
        "--node",
        action="store_true",
        help="also the node: kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl, containerd, "
        "CoreDNS, kube-router, metrics-server",
    )
    sub.add_parser("dir", help="print the cache folder of the pinned version")
    p = sub.add_parser("pin", help="regenerate the wrapper go.mod files for a Kubernetes version")
    p.add_argument("version")
    sub.add_parser("start", help="start etcd + kube-apiserver in the foreground, CRDs installed")
    n = sub.add_parser("node", help="start a single-node cluster that runs pods, in the foreground (root)")
    n.add_argument("--work-dir", type=Path, help="state and logs (default: a fresh folder under /tmp)")
    n.add_argument("--state-file", type=Path, help="where to record the PIDs for node-down")
    n.add_argument("--registry", help="HOST:PORT of a plain-HTTP registry containerd may pull from")
    n.add_argument("--registry-user", default="")
    n.add_argument("--registry-password-file", type=Path, help="a file holding the registry password")
    n.add_argument(
        "--detach",
        action="store_true",
        help="run the node in the background (needs --state-file; its log goes beside it), return once it is up",
    )
    d = sub.add_parser("node-down", help="stop the node a state file describes and check nothing is left")
    d.add_argument("--state-file", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            folder = build.ensure_node() if args.node else build.ensure(with_kubectl=True if args.kubectl else None)
            stats = folder / "build-stats.json"
            print(folder)
            if stats.exists():
                print(json.dumps(json.loads(stats.read_text()), indent=2), file=sys.stderr)
        elif args.command == "dir":
            print(build.cache_dir())
        elif args.command == "pin":
            build.pin(args.version)
        elif args.command == "node":
            return _node_detached(args) if args.detach else _node(args)
        elif args.command == "node-down":
            return _node_down(args.state_file)
        else:
            return _start()
    except (build.BuildError, ClusterError) as error:
        print(f"tools.k8s: {error}", file=sys.stderr)
        return 1
    return 0


def _start() -> int:
    from tools.k8s.cluster import Cluster

    with tempfile.TemporaryDirectory(prefix="lf-k8s-") as tmp:
        cluster = Cluster(build.ensure(), Path(tmp)).start()
        try:
            cluster.install_crds()
            print(f"export KUBECONFIG={cluster.kubeconfig}", flush=True)
            stop = {signal.SIGINT, signal.SIGTERM}
            signal.pthread_sigmask(signal.SIG_BLOCK, stop)
            signal.sigwait(stop)
        finally:
            cluster.stop()
    return 0


def _node(args: argparse.Namespace) -> int:
    from tools.k8s.node import Node, RegistryAccess

    registry = None
    if args.registry:
        password = args.registry_password_file.read_text().strip() if args.registry_password_file else ""
        registry = RegistryAccess(args.registry, args.registry_user, password)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="lf-node-"))
    stop = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    node = Node(build.ensure_node(), work_dir, registry=registry, state_file=args.state_file).start()
    try:
        print(f"export KUBECONFIG={node.kubeconfig}", flush=True)
        print(
            f"# up in {node.timings.get('up')}s; pods on {node.pod_cidr}, Services on {node.service_cidr}; "
            f"logs in {work_dir / 'logs'}",
            file=sys.stderr,
            flush=True,
        )
        signal.sigwait(stop)
    finally:
        seconds = node.stop()
        left = node.leftovers()
        print(f"# node stopped in {seconds}s" + (f"; LEFT BEHIND: {left}" if left else ""), file=sys.stderr)
    return 0 if not left else 1


def _node_down(state_file: Path) -> int:
    from tools.k8s.node import down

    if not state_file.exists():
        print(f"tools.k8s: no node running ({state_file} does not exist)", file=sys.stderr)
        return 0
    left = down(state_file, build.cache_dir())
    if left:
        print(f"tools.k8s: left behind: {left}", file=sys.stderr)
        return 1
    return 0


def _node_detached(args: argparse.Namespace) -> int:
    """Start `python -m tools.k8s node` (without --detach) as its own session, wait for its KUBECONFIG line."""
    import subprocess
    import time

    if args.state_file is None:
        print("tools.k8s: --detach needs --state-file (node-down reads it)", file=sys.stderr)
        return 2
    state_file = args.state_file.resolve()
    if state_file.exists():
        print(f"tools.k8s: {state_file} exists: a node is running (make cluster-down) or it is stale", file=sys.stderr)
        return 1
    build.ensure_node()  # a cold build shows its progress here, not in the log
    log = state_file.with_suffix(".log")
    argv = [sys.executable, "-m", "tools.k8s", "node", "--state-file", str(state_file)]
    for flag in ("work_dir", "registry", "registry_password_file"):
        value = getattr(args, flag)
        if value:
            argv += [f"--{flag.replace('_', '-')}", str(value)]
    if args.registry_user:
        argv += ["--registry-user", args.registry_user]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        for line in text.splitlines():
            if line.startswith("export KUBECONFIG="):
                print(line)
                print(
                    f"# node supervisor PID {proc.pid}, log {log}; stop: python -m tools.k8s node-down "
                    f"--state-file {state_file}",
                    file=sys.stderr,
                )
                return 0
        if proc.poll() is not None:
            print(f"tools.k8s: the node exited ({proc.returncode}):\n{text[-3000:]}", file=sys.stderr)
            return 1
        time.sleep(0.5)
    print(f"tools.k8s: the node was not up after 300 s; see {log}", file=sys.stderr)
    return 1
