"""`python -m tools.images build [--out DIR] [--only NAME ...] [--push HOST:PORT --creds FILE [--insecure]]`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from lf_controlplane.deploying import DeployError, read_credentials
from lf_controlplane.images.layers import LayerError
from lf_controlplane.images.layout import LayoutError
from lf_controlplane.images.registry import RegistryError

from tools.images import debs, recipes
from tools.images.build import BuildError, build_all, helm_values, push_all, summary


def main(argv: Sequence[str] = sys.argv[1:]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.images", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build every image (or --only some) into an OCI layout")
    build.add_argument("--out", type=Path, default=Path("dist/images"), help="output folder (default dist/images)")
    build.add_argument("--only", nargs="+", default=[], choices=[r.name for r in recipes.RECIPES], metavar="NAME")
    build.add_argument("--push", metavar="HOST:PORT", help="push every image to this registry")
    build.add_argument("--creds", type=Path, help="file with user:password (or a docker config.json) for --push")
    build.add_argument("--insecure", action="store_true", help="plain http to a registry that is not on loopback")
    build.add_argument("--registry", metavar="HOST:PORT", help="global.imageRegistry of values.yaml (default --push)")
    args = parser.parse_args(argv)
    if args.creds and not args.push:
        parser.error("--creds is for --push")
    began = time.monotonic()
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        built = build_all(args.out, args.only)
        registry = args.push or args.registry or ""
        if args.push:
            credentials = read_credentials(args.creds, args.push) if args.creds else None
            push_all(args.out, built, args.push, credentials, insecure=args.insecure)
        (args.out / "values.yaml").write_text(helm_values(built, registry))
    except (BuildError, DeployError, RegistryError, debs.DebError, LayerError, LayoutError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary(built), indent=2))
    print(f"{len(built)} images in {args.out / 'oci'} ({time.monotonic() - began:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
