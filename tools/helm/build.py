"""Build helm at the version pinned in tools/helm/module/go.mod into $LF_HELM_CACHE/<version>/.

$LF_HELM_CACHE defaults to ~/.cache/lf/helm.

The wrapper module requires helm.sh/helm/v4 and names its `cmd/helm` as a tool, so its checked-in go.sum pins
every dependency; the build reads it with `-mod=readonly`, CGO off, and helm's own version ldflags, so `helm
version` reports the pinned version. Cold builds take /tmp/lf-cold-build.lock (the machine's 2 cores are shared):
one cold Go build at a time. `build-stats.json` beside the binary records the build's seconds and peak RSS.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from tools.gobuild import BuildError as BuildError  # the error of this module's build, re-exported
from tools.gobuild import cold_build_lock, go_tool, run_logged

HERE = Path(__file__).resolve().parent
MODULE = HERE / "module"
PACKAGE = "helm.sh/helm/v4/cmd/helm"


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


def version_ok(path: Path, version: str) -> bool:
    """True when `path version --short` reports `version` (e.g. v4.3.2+g...)."""
    if not path.is_file():
        return False
    try:
        out = subprocess.run([str(path), "version", "--short"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip().split("+")[0] == version


def _build(version: str, folder: Path) -> dict[str, object]:
    tmp = folder / ".helm.tmp"
    pkg = "helm.sh/helm/v4/internal/version"
    ldflags = f"-s -w -X {pkg}.version={version} -X {pkg}.gitTreeState=clean"
    command = [go_tool("helm"), "build", "-trimpath", "-ldflags", ldflags, "-o", str(tmp), PACKAGE]
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly", "GOTOOLCHAIN": "local"}
    measured = run_logged(command, cwd=MODULE, env=env, log=folder / "helm.build.log", label=f"tools.helm {version}")
    tmp.replace(folder / "helm")
    size = (folder / "helm").stat().st_size
    return {"version": version, "seconds": measured.seconds, "peak_rss_kib": measured.peak_rss_kib, "bytes": size}


def ensure() -> Path:
    """The path of the pinned helm binary, built into the cache first if it is missing or reports another version."""
    version = helm_version()
    folder = cache_dir()
    target = folder / "helm"
    if version_ok(target, version):
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with cold_build_lock():  # one cold build at a time on the shared cores
        if version_ok(target, version):  # another process built it while we waited
            return target
        stats = _build(version, folder)
    (folder / "build-stats.json").write_text(json.dumps({"helm": stats}, indent=2) + "\n")
    if not version_ok(target, version):
        raise BuildError(f"{target} was built but does not report {version}")
    return target
