"""Per-function Python environments for `lf dev`: a function's requirements.txt goes into its own venv.

The runtime itself runs on `lf dev`'s interpreter; the function's venv site-packages is put first on its
PYTHONPATH, so a function sees its own dependencies (and wins over the platform's on a clash) without
reinstalling the runtime into every venv. The venv is rebuilt only when requirements.txt changes.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from lf_controlplane.dev.folders import REQUIREMENTS, requirements_digest

_MARKER = ".lf-requirements.sha256"


class RequirementsError(RuntimeError):
    """Installing a function's requirements failed; the message carries the installer's output."""


@dataclass(frozen=True)
class FunctionEnv:
    site_packages: Path | None

    def pythonpath(self, code_dir: Path) -> str:
        parts = [str(code_dir)]
        if self.site_packages is not None:
            parts.append(str(self.site_packages))
        return ":".join(parts)


async def prepare(code_dir: Path, venv_dir: Path) -> FunctionEnv:
    """Make sure `venv_dir` holds the function's requirements; return where its packages are."""
    digest = requirements_digest(code_dir)
    if digest is None:
        return FunctionEnv(site_packages=None)
    site = _site_packages(venv_dir)
    marker = venv_dir / _MARKER
    if marker.is_file() and marker.read_text() == digest and site.is_dir():
        return FunctionEnv(site_packages=site)
    shutil.rmtree(venv_dir, ignore_errors=True)
    for command in _install_commands(venv_dir, code_dir / REQUIREMENTS):
        await _run(command)
    marker.write_text(digest)
    return FunctionEnv(site_packages=site)


def _site_packages(venv_dir: Path) -> Path:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return venv_dir / "lib" / version / "site-packages"


def _install_commands(venv_dir: Path, requirements: Path) -> list[list[str]]:
    python = str(venv_dir / "bin" / "python")
    uv = shutil.which("uv")
    if uv:
        return [
            [uv, "venv", "--quiet", "--python", sys.executable, str(venv_dir)],
            [uv, "pip", "install", "--quiet", "--python", python, "-r", str(requirements)],
        ]
    return [
        [sys.executable, "-m", "venv", str(venv_dir)],
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(requirements)],
    ]


async def _run(command: list[str]) -> None:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RequirementsError(
            f"`{' '.join(command)}` failed ({process.returncode}):\n{output.decode(errors='replace').strip()}"
        )
