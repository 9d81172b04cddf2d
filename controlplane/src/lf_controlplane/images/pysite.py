"""Python packages for an image's interpreter (Debian 12's python3.11 on x86_64), installed on this machine.

`install` runs `uv pip install --target` for the image's platform and Python version (binary wheels only: nothing
is compiled for a platform that is not this one), `tidy` removes what would make two installs of the same
packages differ (install-time paths, scripts with this machine's interpreter in their shebang), and `compile_tree`
writes byte code that does not depend on when it was written (`checked-hash` .pyc: validated by the source's hash,
not its mtime), so a read-only container starts without compiling and two builds give the same bytes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

PLATFORM = "x86_64-manylinux_2_36"
"""Debian 12's glibc is 2.36."""
PYTHON_VERSION = "3.11"
_TAIL = 30


class InstallError(RuntimeError):
    """Packages that could not be installed for the image (the message carries uv's output)."""


def uv() -> str:
    found = shutil.which("uv")
    if found is None:
        raise InstallError("`uv` not found on PATH: it installs Python packages into images")
    return found


def install(target: Path, args: Sequence[str], *, no_deps: bool = False) -> None:
    """`uv pip install --target target args...` for the image's platform; raises InstallError with uv's output."""
    target.mkdir(parents=True, exist_ok=True)
    argv = [
        uv(),
        "pip",
        "install",
        "--target",
        str(target),
        "--python-platform",
        PLATFORM,
        "--python-version",
        PYTHON_VERSION,
        "--only-binary",
        ":all:",
        "--link-mode",
        "copy",
        "--no-progress",
        *(["--no-deps"] if no_deps else []),
        *args,
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.splitlines()[-_TAIL:])
        raise InstallError(f"`uv pip install` for the image failed ({done.returncode}):\n{tail}")
    tidy(target)


UNSTABLE = ("direct_url.json", "REQUESTED", "uv_cache.json", "sboms")
"""Install records that name this machine or this moment: where a local wheel was (`direct_url.json`), uv's
cache stamp of it (`uv_cache.json`), maturin's SBOM (a timestamp and a random serial number)."""


def tidy(target: Path) -> None:
    """Remove scripts (`bin/`), the install records of UNSTABLE and any byte code compiled at install time, so two
    installs of the same wheels give the same files."""
    shutil.rmtree(target / "bin", ignore_errors=True)
    for name in UNSTABLE:
        for path in target.glob(f"*.dist-info/{name}"):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    for cache in sorted(target.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache, ignore_errors=True)
    for record in target.glob("*.dist-info/RECORD"):  # drop the lines of the files removed above
        lines = record.read_text().splitlines(keepends=True)
        kept = [line for line in lines if not line.startswith(("../", "bin/")) and not _unstable(line)]
        record.write_text("".join(kept))


def _unstable(record_line: str) -> bool:
    parts = record_line.split(",", 1)[0].split("/")
    return len(parts) > 1 and parts[0].endswith(".dist-info") and parts[1] in UNSTABLE


def compile_tree(root: Path, dest: str) -> None:
    """Compile every module under `root` to `checked-hash` byte code whose file names say `dest` (where `root`
    lands in the image)."""
    argv = [
        sys.executable,
        "-m",
        "compileall",
        "-q",
        "--invalidation-mode",
        "checked-hash",
        "-s",
        str(root),
        "-p",
        dest,
        str(root),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0", "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "0")}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:  # a module with a syntax error for 3.11 (e.g. a test file of a package) is left as is
        failed = [line for line in done.stdout.splitlines() if line.startswith("***")]
        if not failed and done.stderr:
            raise InstallError(f"compileall {root} failed: {done.stderr.strip()}")
