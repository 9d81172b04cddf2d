"""Build Zot's minimal binary (`zot-minimal`) from the source snapshot in ../shared/vendor/zot into a cache.

Zot's module (zotregistry.dev/zot/v2) is not served by the Go module proxy, so it is built as the main module from a
writable copy of the snapshot (its dependencies do come from the proxy). The recipe is the snapshot's README's:
`CGO_ENABLED=0 GOEXPERIMENT=jsonv2 go build -buildmode=pie -trimpath ./cmd/zot` with the buildinfo ldflags of Zot's
`binary-minimal` Make target (no extension build tags).

The binary goes to $LF_ZOT_CACHE (default ~/.cache/lf/zot)/<commit>/zot-minimal with the build log and
`build-stats.json` (wall time, peak RSS from /usr/bin/time -v when present, binary size). A binary whose `--version`
reports the pinned commit is not rebuilt. Cold builds hold /tmp/lf-cold-build.lock (one big build at a time).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tools.gobuild import BuildError as BuildError  # the error of this module's build, re-exported
from tools.gobuild import cold_build_lock, go_tool, run_logged

ZOT_COMMIT = "6d19b445fed1c86c23fb7b351fac07cfd4717402"
"""The upstream commit of the snapshot (see /work/shared/vendor/README.md)."""
ZOT_RELEASE = "v2.1.20-25"
REPO = Path(__file__).resolve().parents[2]


def _default_source() -> Path:
    """$LF_ZOT_SOURCE, else the snapshot beside the checkout (../shared/vendor/zot), else /work/shared/vendor/zot."""
    if os.environ.get("LF_ZOT_SOURCE"):
        return Path(os.environ["LF_ZOT_SOURCE"])
    beside = REPO.parent / "shared" / "vendor" / "zot"
    return beside if beside.is_dir() else Path("/work/shared/vendor/zot")


SOURCE = _default_source()
CACHE = Path(os.environ.get("LF_ZOT_CACHE", Path.home() / ".cache" / "lf" / "zot"))
BINARY = "zot-minimal"
MODULE = "zotregistry.dev/zot/v2"


def cache_dir() -> Path:
    return CACHE / ZOT_COMMIT


def binary_path() -> Path:
    return cache_dir() / BINARY


def version_ok(path: Path) -> bool:
    """True when `path --version` reports the pinned commit (Zot logs it as JSON: `"commit":"…"`)."""
    if not path.is_file():
        return False
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return re.search(rf'"commit"\s*:\s*"{ZOT_COMMIT}"', out.stdout + out.stderr) is not None


def ldflags(go_version: str) -> str:
    info = f"{MODULE}/pkg/buildinfo"
    return " ".join(
        [
            f"-X {info}.ReleaseTag={ZOT_RELEASE}",
            f"-X {info}.Commit={ZOT_COMMIT}",
            f"-X {info}.BinaryType=minimal",
            f"-X {info}.GoVersion={go_version}",
            "-s -w",
        ]
    )


def _go_version(go: str) -> str:
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise BuildError(f"`go env GOVERSION` failed: {out.stderr.strip()}")
    return out.stdout.strip()


def _check_source() -> None:
    go_mod = SOURCE / "go.mod"
    try:
        first = go_mod.read_text().splitlines()[0]
    except (OSError, IndexError) as exc:
        raise BuildError(f"no Zot source snapshot at {SOURCE} ({exc}); set LF_ZOT_SOURCE") from None
    if first.strip() != f"module {MODULE}":
        raise BuildError(f"{go_mod} declares {first.strip()!r}, expected 'module {MODULE}'")


def build(folder: Path) -> dict[str, object]:
    """Build zot-minimal into `folder` (no cache check, no lock) and return its build stats."""
    _check_source()
    go = go_tool("Zot")
    folder.mkdir(parents=True, exist_ok=True)
    tmp_binary = folder / f".{BINARY}.tmp"
    with tempfile.TemporaryDirectory(prefix="zot-src-", dir=folder.parent) as work:
        src = Path(work) / "zot"
        shutil.copytree(SOURCE, src, symlinks=True)
        for path in [src, *src.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o200)
        command = [
            go, "build", "-o", str(tmp_binary), "-buildmode=pie", "-trimpath",
            "-ldflags", ldflags(_go_version(go)), "./cmd/zot",
        ]  # fmt: skip
        env = {
            **os.environ,
            "CGO_ENABLED": "0",
            "GOEXPERIMENT": "jsonv2",
            "GOFLAGS": "-mod=readonly",
            "GOTOOLCHAIN": "local",
        }
        label = f"tools.registry {BINARY} {ZOT_COMMIT[:8]}"
        measured = run_logged(command, cwd=src, env=env, log=folder / "build.log", label=label)
    target = folder / BINARY
    tmp_binary.replace(target)
    return {
        "commit": ZOT_COMMIT,
        "seconds": measured.seconds,
        "peak_rss_kib": measured.peak_rss_kib,
        "binary_bytes": target.stat().st_size,
    }


def ensure() -> Path:
    """The path of a zot-minimal at the pinned commit, built (under the cold-build lock) when the cache lacks it."""
    target = binary_path()
    if version_ok(target):
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with cold_build_lock():
        if version_ok(target):  # built by someone else while we waited
            return target
        stats = build(cache_dir())
        (cache_dir() / "build-stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    if not version_ok(target):
        raise BuildError(f"{target} was built but `--version` does not report commit {ZOT_COMMIT}")
    return target
