"""`lf deploy`, `lf list`, `lf describe`, `lf delete` against a cluster (docs/architecture.md, "Function folders").

A folder's `function.yaml` becomes the complete Function manifest, the namespace `-n`, else the manifest's, else
the kube context's. A spec without `source` and `image` gets its code one of two ways:

- with a registry (`lf deploy --registry HOST:PORT`, or LF_REGISTRY): the function's image is built here
  (lf_controlplane.images.functions: its runtime's base + dependencies + code), pushed, and named by digest in
  `spec.image` (`HOST:PORT/functions/NAMESPACE/NAME@sha256:…`);
- without one: the folder's files inline (`source.files`), for small Python functions without dependencies only
  (a folder with a requirements.txt, or a Go or Rust function, is refused with a message naming --registry).

Applied with a server-side apply (field manager `lf-cli`); the operator does the rest.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lf_core.contract.specs import ManifestError, load_manifest

from lf_controlplane.dev.folders import MANIFEST, REQUIREMENTS, is_ignored
from lf_controlplane.images import functions as function_images
from lf_controlplane.images.layout import LayoutError
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


@dataclass(frozen=True)
class RegistryTarget:
    """Where `lf deploy` pushes a function's image, and the base images it builds on."""

    registry: str
    """`HOST[:PORT]`"""
    credentials: tuple[str, str] | None = None
    """(user, password); None: the docker-style config.json's, as registry.push reads it."""
    base: str | None = None
    """The runtime base (a registry reference or `oci:DIR:REF`); default: the registry's
    `litefunctions/runtime-<runtime>:<BASE_TAG>` (what `make images --push` put there)."""
    insecure: bool = False

    def base_for(self, runtime: str) -> str:
        return self.base or function_images.default_base(self.registry, runtime)


def read_credentials(path: Path, registry: str) -> tuple[str, str]:
    """`user:password` on the first line of `path`, or a docker-style config.json's entry for `registry`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DeployError(f"{path}: {exc.strerror}") from None
    if text.lstrip().startswith("{"):
        from lf_controlplane.images.registry import credentials_from_config

        found = credentials_from_config(registry, path)
        if found is None:
            raise DeployError(f"{path}: no credentials for {registry}")
        return found.username, found.password
    user, sep, password = (text.splitlines() or [""])[0].partition(":")
    if not sep or not user:
        raise DeployError(f"{path}: expected `user:password` on its first line, or a docker config.json")
    return user, password


def manifest_of(folder: Path, namespace: str | None, default_namespace: str, *, inline: bool = True) -> dict[str, Any]:
    """The complete Function manifest for `folder`. Without `inline`, a spec naming no source nor image is left
    so (`with_image` fills spec.image). Raises DeployError (bad manifest, unreadable files, code that cannot go
    inline)."""
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
    if "source" not in spec and "image" not in spec and inline:
        runtime = spec.get("runtime", "python")
        if runtime != "python":
            raise DeployError(
                f"{folder}: a {runtime} function runs from an image built with its runtime: pass --registry "
                "HOST:PORT (or set LF_REGISTRY) to build and push it"
            )
        if (folder / REQUIREMENTS).is_file():
            raise DeployError(
                f"{folder}: has a {REQUIREMENTS}, and inline code carries no dependencies: pass --registry "
                "HOST:PORT (or set LF_REGISTRY) to build an image with them and push it"
            )
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


def needs_image(manifest: Mapping[str, Any]) -> bool:
    spec = manifest.get("spec") or {}
    return "source" not in spec and "image" not in spec


async def with_image(
    manifest: dict[str, Any], folder: Path, target: RegistryTarget, progress: Callable[[str], None]
) -> dict[str, Any]:
    """`manifest` with spec.image: the function's image built from `folder`, pushed to `target`, by digest.
    A manifest that names a source or an image already is returned as it is."""
    if not needs_image(manifest):
        return manifest
    from lf_controlplane.images.registry import Credentials, RegistryError, push

    try:
        function = load_manifest(manifest, source=str(folder / MANIFEST))
    except ManifestError as exc:
        raise DeployError(str(exc)) from None
    out = function_images.cache_dir() / "functions" / f"{function.namespace}.{function.name}"
    shutil.rmtree(out, ignore_errors=True)  # a fresh layout: the image is exactly base + this folder
    base = target.base_for(function.runtime)
    progress(f"building {function.name} ({function.runtime}) on {base}")
    try:
        image = await function_images.build_function_image(
            function,
            folder,
            base,
            out,
            printer=lambda _label, line: progress(line),
            credentials=target.credentials,
            insecure=target.insecure,
        )
    except function_images.ImageBuildError as exc:
        raise DeployError(str(exc)) from None
    except (RegistryError, LayoutError) as exc:
        raise DeployError(f"base image {base}: {exc}") from None
    repository = f"functions/{function.namespace}/{function.name}"
    credentials = Credentials(*target.credentials) if target.credentials else None
    reference = f"{target.registry}/{repository}:g{image.digest.removeprefix('sha256:')[:12]}"
    progress(f"pushing {reference}")
    try:
        digest = await asyncio.to_thread(
            push, image.layout, image.ref, reference, credentials, insecure=target.insecure
        )
    except RegistryError as exc:
        raise DeployError(f"push to {target.registry}: {exc}") from None
    spec = {**manifest["spec"], "image": f"{target.registry}/{repository}@{digest}"}
    return {**manifest, "spec": spec}


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
