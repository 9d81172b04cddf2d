"""`python -m tools.registry build|dir|start`: see the package docstring."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
from pathlib import Path

from tools.registry import build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.registry", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build zot-minimal into the cache (skipped when the cached one is current)")
    sub.add_parser("dir", help="print the cache folder of the pinned commit")
    start = sub.add_parser("start", help="run Zot on loopback in the foreground (htpasswd auth) until interrupted")
    start.add_argument("--folder", type=Path, help="keep storage, config and credentials here (default: a temp dir)")
    start.add_argument("--user", default="lf", help="the htpasswd user (default: lf; the password is random)")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            binary = build.ensure()
            print(binary)
            stats = binary.parent / "build-stats.json"
            if stats.exists():
                print(json.dumps(json.loads(stats.read_text()), indent=2), file=sys.stderr)
        elif args.command == "dir":
            print(build.cache_dir())
        else:
            return _start(args.folder, args.user)
    except build.BuildError as error:
        print(f"tools.registry: {error}", file=sys.stderr)
        return 1
    return 0


def _start(folder: Path | None, user: str) -> int:
    from tools.registry.zot import Zot, ZotError

    binary = build.ensure()
    with tempfile.TemporaryDirectory(prefix="lf-zot-") as tmp:
        try:
            zot = Zot(binary, folder or Path(tmp), user=user).start()
        except ZotError as error:
            print(f"tools.registry: {error}", file=sys.stderr)
            return 1
        with zot:
            print(f"registry: {zot.address}", flush=True)
            print(f"export REGISTRY_AUTH_FILE={zot.auth_file}", flush=True)
            print(f"# user {zot.user}; skopeo --authfile {zot.auth_file}; log {zot.log}", flush=True)
            stop = {signal.SIGINT, signal.SIGTERM}
            signal.pthread_sigmask(signal.SIG_BLOCK, stop)
            signal.sigwait(stop)
    return 0
