"""`lf deploy`, `lf list`, `lf describe`, `lf delete` against a cluster (docs/architecture.md, "Function folders").

A folder's `function.yaml` becomes the complete Function manifest: a spec without `source` and `image` gets the
folder's files inline (`source.files`), the namespace is `-n`, else the manifest's, else the kube context's.
Applied with a server-side apply (field manager `lf-cli`); the operator does the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from lf_core.contract.specs import ManifestError, load_manifest

from lf_controlplane.dev.folders import MANIFEST, is_ignored
from lf_controlplane.operator.kube import Kube
from lf_controlplane.operator.specs import API_VERSION
from lf_controlplane.operator.status import condition_status

MAX_INLINE_BYTES = 900 * 1024  # a ConfigMap holds 1 MiB, with room for its metadata
FIELD_MANAGER = "lf-cli"


class DeployError(RuntimeError):
    pass


def folder_files(folder: Path) -> dict[str, str]:
    """The function's files (relative path → text), without function.yaml and tool state. Raises DeployError for
    a binary file or a folder over MAX_INLINE_BYTES (archives come with object storage)."""
    files: dict[str, str] = {}
    total = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        if is_ignored(relative) or relative.as_posix() == MANIFEST or relative.parts[0].startswith("."):
            continue
        data = path.read_bytes()
        total += len(data)
        if total > MAX_INLINE_BYTES:
            raise DeployError(
                f"{folder}: the code is over {MAX_INLINE_BYTES // 1024} KiB, too large to carry inline; "
                "build an image and set spec.image (source archives are not supported yet)"
            )
        try:
            files[relative.as_posix()] = data.decode("utf-8")
        except UnicodeDecodeError:
            raise DeployError(f"{path}: not UTF-8 text; inline sources carry text files only") from None
    return files


def manifest_of(folder: Path, namespace: str | None, default_namespace: str) -> dict[str, Any]:
    """The complete Function manifest for `folder`. Raises DeployError (bad manifest, unreadable files)."""
    manifest_path = folder / MANIFEST
    try:
        raw = yaml.safe_load(manifest_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DeployError(f"{manifest_path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise DeployError(f"{manifest_path}: invalid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise DeployError(f"{manifest_path}: not a Function manifest")
    metadata = dict(raw.get("metadata") or {})
    metadata["namespace"] = namespace or metadata.get("namespace") or default_namespace
    spec = dict(raw.get("spec") or {})
    if "source" not in spec and "image" not in spec:
        spec["source"] = {"files": folder_files(folder)}
    manifest = {"apiVersion": raw.get("apiVersion", API_VERSION), "kind": "Function", "metadata": metadata}
    manifest["spec"] = spec
    try:
        load_manifest(manifest, source=str(manifest_path))
    except ManifestError as exc:
        raise DeployError(str(exc)) from None
    return {
        "apiVersion": manifest["apiVersion"],
        "kind": "Function",
        "metadata": {k: v for k, v in metadata.items() if k in ("name", "namespace", "labels", "annotations")},
        "spec": spec,
    }


def ready_state(obj: Mapping[str, Any]) -> tuple[bool, str | None, str]:
    """(ready, failure or None, progress line) of a Function as stored."""
    generation = int(obj.get("metadata", {}).get("generation", 0))
    status = obj.get("status") or {}
    conditions = status.get("conditions") or []
    current = int(status.get("observedGeneration", 0)) >= generation
    progress = f"{status.get('phase') or 'Pending'}: {status.get('readyReplicas', 0)}/{status.get('replicas', 0)} ready"
    if not current:
        return False, None, "waiting for the operator"
    if condition_status(conditions, "Valid") == "False":
        message = next((c.get("message", "") for c in conditions if c.get("type") == "Valid"), "")
        return False, f"invalid spec: {message}", progress
    if status.get("phase") == "Failed":
        message = next((c.get("message", "") for c in conditions if c.get("type") == "Available"), "")
        return False, f"failed: {message}", progress
    return condition_status(conditions, "Ready") == "True", None, progress


async def wait_ready(
    kube: Kube, name: str, namespace: str, timeout: float, progress: Callable[[str], None], poll: float = 1.0
) -> dict[str, Any]:
    """Poll the Function until Ready; raises DeployError when it fails or `timeout` passes."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        obj = await kube.get("Function", name, namespace)
        if obj is None:
            raise DeployError(f"function {name} disappeared from {namespace}")
        ready, failure, line = ready_state(obj)
        if failure:
            raise DeployError(f"{name}: {failure}")
        if ready:
            return obj
        if line != last:
            progress(line)
            last = line
        if time.monotonic() > deadline:
            raise DeployError(f"{name} not ready after {timeout:g}s ({line})")
        await asyncio.sleep(poll)


def rows(functions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per Function, for `lf list --cluster`."""
    out = []
    for obj in sorted(functions, key=lambda o: o["metadata"]["name"]):
        status = obj.get("status") or {}
        out.append(
            {
                "name": obj["metadata"]["name"],
                "namespace": obj["metadata"].get("namespace", ""),
                "runtime": (obj.get("spec") or {}).get("runtime", "python"),
                "phase": status.get("phase", ""),
                "ready": status.get("readyReplicas", 0),
                "replicas": status.get("replicas", 0),
                "url": status.get("url", ""),
            }
        )
    return out


def describe(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The Function for `lf describe`: metadata, spec without the inline code (file names only), status."""
    spec = dict(obj.get("spec") or {})
    source = spec.get("source") or {}
    if "files" in source:
        spec["source"] = {"files": sorted(source["files"])}
    meta = obj.get("metadata", {})
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "generation": meta.get("generation"),
        "created": meta.get("creationTimestamp"),
        "spec": spec,
        "status": obj.get("status") or {},
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (source files) as literal blocks, so the printed manifest reads like the code."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)
