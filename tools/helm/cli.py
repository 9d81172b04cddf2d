"""`python -m tools.helm build|path`: see the package docstring."""

from __future__ import annotations

import argparse
import json
import sys

from tools.helm import build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.helm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build helm into the cache (skipped when the cached one has the pinned version)")
    sub.add_parser("path", help="print the cached helm binary's path (building it first when missing)")
    args = parser.parse_args(argv)
    try:
        path = build.ensure()
    except build.BuildError as error:
        print(f"tools.helm: {error}", file=sys.stderr)
        return 1
    print(path)
    stats = path.parent / "build-stats.json"
    if args.command == "build" and stats.exists():
        print(json.dumps(json.loads(stats.read_text()), indent=2), file=sys.stderr)
    return 0
