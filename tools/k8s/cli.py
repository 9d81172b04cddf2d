"""`python -m tools.k8s build|pin|start`: see the package docstring."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
from pathlib import Path

from tools.k8s import build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.k8s", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build kube-apiserver, etcd (and kubectl when absent) into the cache")
    b.add_argument("--kubectl", action="store_true", help="build kubectl even when the machine has one")
    sub.add_parser("dir", help="print the cache folder of the pinned version")
    p = sub.add_parser("pin", help="regenerate the wrapper go.mod files for a Kubernetes version")
    p.add_argument("version")
    sub.add_parser("start", help="start etcd + kube-apiserver in the foreground, CRDs installed")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            folder = build.ensure(with_kubectl=True if args.kubectl else None)
            stats = folder / "build-stats.json"
            print(folder)
            if stats.exists():
                print(json.dumps(json.loads(stats.read_text()), indent=2), file=sys.stderr)
        elif args.command == "dir":
            print(build.cache_dir())
        elif args.command == "pin":
            build.pin(args.version)
        else:
            return _start()
    except build.BuildError as error:
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
