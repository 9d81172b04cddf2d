"""Function folders on disk: a `function.yaml` (a Function manifest) next to the code.

Finding them, reading their manifests, and fingerprinting their files so `lf dev` knows what changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml
from lf_core.contract.specs import Function, ManifestError, load_manifest

from lf_controlplane.dev.triggers import is_trigger_file

MANIFEST = "function.yaml"
REQUIREMENTS = "requirements.txt"
# Never part of a function's code: tool state, caches, virtual environments, build output (cargo's `target`).
IGNORED_PARTS = frozenset(
    {".lf", "__pycache__", ".venv", ".git", ".pytest_cache", ".mypy_cache", "node_modules", "target"}
)


@dataclass(frozen=True)
class FunctionFolder:
    """A function as found on disk: its folder and either a valid Function or the error that stops it."""

    path: Path
    function: Function | None
    error: str | None = None

    @property
    def key(self) -> str:
        return self.path.name if self.function is None else f"{self.function.namespace}/{self.function.name}"


def discover(root: Path) -> list[FunctionFolder]:
    """Every folder under `root` (the root itself included) that holds a function.yaml, sorted by path."""
    manifests = sorted(p for p in root.rglob(MANIFEST) if not is_ignored(p.relative_to(root)))
    return [read_folder(m.parent) for m in manifests]


def read_folder(path: Path) -> FunctionFolder:
    manifest_path = path / MANIFEST
    try:
        data = yaml.safe_load(manifest_path.read_text(encoding="utf-8"))
        return FunctionFolder(path=path, function=load_manifest(data, source=str(manifest_path)))
    except yaml.YAMLError as exc:
        return FunctionFolder(path=path, function=None, error=f"{manifest_path}: invalid YAML: {exc}")
    except (ManifestError, OSError) as exc:
        return FunctionFolder(path=path, function=None, error=str(exc))


def is_ignored(relative: Path) -> bool:
    return any(part in IGNORED_PARTS or part.endswith(".pyc") for part in relative.parts)


def fingerprint(path: Path) -> str:
    """A digest of every file of the function (names and contents), to skip reloads when nothing changed."""
    digest = hashlib.sha256()
    files = (p for p in path.rglob("*") if p.is_file() and not is_ignored(p.relative_to(path)))
    for file in sorted(f for f in files if not (f.parent == path and is_trigger_file(f.name))):  # not code
        digest.update(str(file.relative_to(path)).encode())
        digest.update(b"\0")
        digest.update(file.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def requirements_digest(path: Path) -> str | None:
    requirements = path / REQUIREMENTS
    if not requirements.is_file():
        return None
    return hashlib.sha256(requirements.read_bytes()).hexdigest()
