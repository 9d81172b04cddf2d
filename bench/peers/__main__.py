"""`python -m bench.peers [NAME ...]`: build the peers' Go binaries (all by default) and print their folders."""

from __future__ import annotations

import sys

from bench.harness import BenchError
from bench.peers.build import BUILDS, ensure


def main(argv: list[str]) -> int:
    names = argv or list(BUILDS)
    try:
        for name in names:
            if name not in BUILDS:
                raise BenchError(f"unknown peer build {name}; known: {', '.join(BUILDS)}")
            print(ensure(name))
    except BenchError as exc:
        print(f"bench.peers: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
