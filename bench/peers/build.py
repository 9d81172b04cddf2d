"""Build the peers' Go binaries into a cache outside the repo, once per version.

    python -m bench.peers [NAME ...]

- queue-proxy: Knative Serving's `cmd/queue` at a pinned version, through the wrapper module go/queue-proxy
  (knative.dev/serving's go.mod has a replace directive, so `go install module@version` refuses it).
- openfaas-model: our models of of-watchdog (http mode) and the OpenFaaS gateway, go/openfaas-model; cached by a
  hash of their sources. The real ones cannot be fetched: the Go module proxy refuses every github.com/openfaas
  module (see README.md).

Binaries go to $LF_PEERS_CACHE (default ~/.cache/lf/peers)/<name>-<version>/, with the build log beside them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.harness import BenchError

GO_DIR = Path(__file__).resolve().parent / "go"
CACHE = Path(os.environ.get("LF_PEERS_CACHE", Path.home() / ".cache" / "lf" / "peers"))
QUEUE_PROXY_VERSION = "v0.42.2"  # knative.dev/serving; v0.51.0's knative.dev/pkg and networking are not served


@dataclass(frozen=True)
class GoBuild:
    name: str
    module_dir: Path
    packages: tuple[tuple[str, str], ...]  # (package, binary name)

    def version(self) -> str:
        if self.name == "queue-proxy":
            return QUEUE_PROXY_VERSION
        digest = hashlib.sha256()
        for path in sorted(self.module_dir.rglob("*")):
            if path.is_file() and path.suffix in {".go", ".mod", ".sum"}:
                digest.update(path.relative_to(self.module_dir).as_posix().encode())
                digest.update(path.read_bytes())
        return "src-" + digest.hexdigest()[:12]

    def folder(self) -> Path:
        return CACHE / f"{self.name}-{self.version()}"


BUILDS = {
    "queue-proxy": GoBuild("queue-proxy", GO_DIR / "queue-proxy", (("knative.dev/serving/cmd/queue", "queue"),)),
    "openfaas-model": GoBuild(
        "openfaas-model", GO_DIR / "openfaas-model", (("./cmd/watchdog", "watchdog"), ("./cmd/gateway", "gateway"))
    ),
}


def go_tool() -> str:
    found = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if found is None:
        raise BenchError("go not found: the peers' proxies are built with the Go toolchain")
    return found


def ensure(name: str) -> Path:
    """The folder holding `name`'s binaries, built first when missing. A failed build names the log."""
    build = BUILDS[name]
    folder = build.folder()
    if all((folder / binary).is_file() for _, binary in build.packages):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    log = folder.parent / f"{folder.name}.build.log"
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"}
    print(f"  building {name} {build.version()} (log: {log})", file=sys.stderr)
    with log.open("wb") as out:
        for package, binary in build.packages:
            tmp = folder / f".{binary}.tmp"
            command = [go_tool(), "build", "-trimpath", "-o", str(tmp), package]
            out.write(f"$ {' '.join(command)}\n".encode())
            out.flush()
            done = subprocess.run(command, cwd=build.module_dir, env=env, stdout=out, stderr=subprocess.STDOUT)
            if done.returncode != 0:
                raise BenchError(f"building peer {name} ({package}) failed ({done.returncode}); see {log}")
            tmp.replace(folder / binary)
    return folder
