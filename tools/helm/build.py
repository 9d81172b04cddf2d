"""Build helm at the version pinned in tools/helm/module/go.mod into $LF_HELM_CACHE/<version>/.

$LF_HELM_CACHE defaults to ~/.cache/lf/helm.

The wrapper module requires helm.sh/helm/v4 and names its `cmd/helm` as a tool, so its checked-in go.sum pins
every dependency; the build reads it with `-mod=readonly`, CGO off, and helm's own version ldflags, so `helm
version` reports the pinned version. Cold builds take /tmp/lf-cold-build.lock (the machine's 2 cores are shared):
one cold Go build at a time. `build-stats.json` beside the binary records the build's seconds and peak RSS.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULE = HERE / "module"
PACKAGE = "helm.sh/helm/v4/cmd/helm"
COLD_BUILD_LOCK = Path("/tmp/lf-cold-build.lock")


class BuildError(RuntimeError):
    pass


def cache_root() -> Path:
    return Path(os.environ.get("LF_HELM_CACHE", Path.home() / ".cache" / "lf" / "helm"))


def helm_version() -> str:
    """The pinned helm version (from the wrapper's go.mod)."""
    match = re.search(r"^\s*(?:require\s+)?helm\.sh/helm/v4\s+(v\S+)", (MODULE / "go.mod").read_text(), re.MULTILINE)
    if match is None:
        raise BuildError(f"{MODULE / 'go.mod'} does not require helm.sh/helm/v4")
    return match.group(1)


def cache_dir() -> Path:
    return cache_root() / helm_version()


def binary_path() -> Path:
    return cache_dir() / "helm"


def go_tool() -> str:
    found = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if found is None:
        raise BuildError("go not found: helm is built with the Go toolchain")
    return found


def version_ok(path: Path, version: str) -> bool:
    """True when `path version --short` reports `version` (e.g. v4.3.2+g...)."""
    if not path.is_file():
        return False
    try:
        out = subprocess.run([str(path), "version", "--short"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip().split("+")[0] == version


def _peak_rss_kib(time_output: str) -> int | None:
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_output)
    return int(match.group(1)) if match else None


def _build(version: str, folder: Path) -> dict[str, object]:
    log = folder / "helm.build.log"
    stats_file = folder / "helm.time"
    tmp = folder / ".helm.tmp"
    pkg = "helm.sh/helm/v4/internal/version"
    ldflags = f"-s -w -X {pkg}.version={version} -X {pkg}.gitTreeState=clean"
    command = [go_tool(), "build", "-trimpath", "-ldflags", ldflags, "-o", str(tmp), PACKAGE]
    if Path("/usr/bin/time").exists():
        command = ["/usr/bin/time", "-v", "-o", str(stats_file), *command]
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly", "GOTOOLCHAIN": "local"}
    print(f"tools.helm: building helm {version} (log: {log})", file=sys.stderr, flush=True)
    started = time.monotonic()
    with log.open("wb") as out:
        out.write(f"$ {' '.join(command)}\n".encode())
        out.flush()
        done = subprocess.run(command, cwd=MODULE, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    seconds = round(time.monotonic() - started, 1)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise BuildError(f"building helm {version} failed ({done.returncode}); see {log}:\n{tail}")
    tmp.replace(folder / "helm")
    peak = _peak_rss_kib(stats_file.read_text()) if stats_file.exists() else None
    print(f"tools.helm: helm built in {seconds}s, peak RSS {peak} KiB", file=sys.stderr, flush=True)
    return {"version": version, "seconds": seconds, "peak_rss_kib": peak, "bytes": (folder / "helm").stat().st_size}


def ensure() -> Path:
    """The path of the pinned helm binary, built into the cache first if it is missing or reports another version."""
    version = helm_version()
    folder = cache_dir()
    target = folder / "helm"
    if version_ok(target, version):
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with COLD_BUILD_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one cold build at a time on the shared cores
        try:
            if version_ok(target, version):  # another process built it while we waited
                return target
            stats = _build(version, folder)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    (folder / "build-stats.json").write_text(json.dumps({"helm": stats}, indent=2) + "\n")
    if not version_ok(target, version):
        raise BuildError(f"{target} was built but does not report {version}")
    return target
