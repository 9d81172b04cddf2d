"""OCI image layouts on disk (the image-spec's `oci-layout`, `index.json`, `blobs/sha256/…`): reading a base image
from one, and writing an image — config, manifest, index entry — into one, reproducibly.

A layout is what skopeo copies to a registry (`skopeo copy oci:DIR:REF docker://HOST/REPO:TAG`) and what
umoci unpacks (tests/integration/images/ checks both). Nothing in the platform builds images with it yet:
`lf deploy`, `make images` and the pipeline's builder are issue 13's remaining work.

JSON is written with sorted keys and no spaces, and every timestamp of the config is fixed (`created`: the
epoch, or SOURCE_DATE_EPOCH), so an image's digest depends on its contents alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lf_controlplane.images.layers import Layer

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
LAYOUT_VERSION = "1.0.0"


class LayoutError(ValueError):
    """A layout, image or reference that is missing or malformed (the message names which)."""


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Descriptor:
        try:
            return cls(
                str(data["mediaType"]), str(data["digest"]), int(data["size"]), dict(data.get("annotations", {}))
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LayoutError(f"not an OCI descriptor: {exc}") from None


@dataclass(frozen=True)
class Runtime:
    """How a container of the image runs: the image config's `config` object."""

    entrypoint: Sequence[str] = ()
    cmd: Sequence[str] = ()
    env: Sequence[str] = ()
    """`NAME=value` strings, in order."""
    user: str = ""
    workdir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.entrypoint:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            out["Cmd"] = list(self.cmd)
        if self.env:
            out["Env"] = list(self.env)
        if self.user:
            out["User"] = self.user
        if self.workdir:
            out["WorkingDir"] = self.workdir
        if self.labels:
            out["Labels"] = dict(self.labels)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Runtime:
        return cls(
            entrypoint=tuple(data.get("Entrypoint") or ()),
            cmd=tuple(data.get("Cmd") or ()),
            env=tuple(data.get("Env") or ()),
            user=str(data.get("User", "")),
            workdir=str(data.get("WorkingDir", "")),
            labels=dict(data.get("Labels") or {}),
        )

    def with_env(self, extra: Mapping[str, str]) -> Runtime:
        """This runtime with `extra` variables set (replacing a same-named one, in place; new ones appended)."""
        names = {item.partition("=")[0]: i for i, item in enumerate(self.env)}
        env = list(self.env)
        for name, value in extra.items():
            if name in names:
                env[names[name]] = f"{name}={value}"
            else:
                env.append(f"{name}={value}")
        return Runtime(self.entrypoint, self.cmd, tuple(env), self.user, self.workdir, self.labels)


@dataclass(frozen=True)
class Image:
    """An image as read from a layout: its manifest, config and layers (descriptors and diff ids, base first)."""

    manifest: Descriptor
    config: dict[str, Any]
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]

    @property
    def runtime(self) -> Runtime:
        return Runtime.from_json(self.config.get("config") or {})


def _json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def created() -> str:
    """The config's timestamp: SOURCE_DATE_EPOCH's moment, else the epoch (never the build's wall clock)."""
    seconds = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Layout:
    """An OCI image layout directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def blobs(self) -> Path:
        return self.root / "blobs" / "sha256"

    @classmethod
    def create(cls, root: Path) -> Layout:
        """A new, empty layout at `root` (which must not hold one already)."""
        if (root / "index.json").exists():
            raise LayoutError(f"{root} already holds an OCI layout")
        layout = cls(root)
        layout.blobs.mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_bytes(_json({"imageLayoutVersion": LAYOUT_VERSION}))
        layout._write_index([])
        return layout

    @classmethod
    def open(cls, root: Path) -> Layout:
        marker = root / "oci-layout"
        try:
            version = json.loads(marker.read_bytes()).get("imageLayoutVersion")
        except (OSError, ValueError) as exc:
            raise LayoutError(f"{root} is not an OCI layout ({marker}: {exc})") from None
        if version != LAYOUT_VERSION:
            raise LayoutError(f"{root}: unsupported imageLayoutVersion {version!r}")
        return cls(root)

    # -- blobs ------------------------------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        if algorithm != "sha256" or len(hexdigest) != 64 or not all(c in "0123456789abcdef" for c in hexdigest):
            raise LayoutError(f"not a sha256 digest: {digest!r}")
        return self.blobs / hexdigest

    def put_bytes(self, media_type: str, data: bytes, annotations: Mapping[str, str] | None = None) -> Descriptor:
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        path = self.blob_path(digest)
        if not path.exists():
            partial = path.with_name(f".{path.name}.partial")
            partial.write_bytes(data)
            partial.replace(path)
        return Descriptor(media_type, digest, len(data), dict(annotations or {}))

    def read_blob(self, descriptor: Descriptor) -> bytes:
        path = self.blob_path(descriptor.digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise LayoutError(f"{self.root}: blob {descriptor.digest} is missing") from None
        if f"sha256:{hashlib.sha256(data).hexdigest()}" != descriptor.digest or len(data) != descriptor.size:
            raise LayoutError(f"{self.root}: blob {descriptor.digest} does not match its digest or size")
        return data

    def copy_blob_from(self, other: Layout, digest: str) -> None:
        """Bring a blob of `other` here (a hard link when both are on one file system, else a copy)."""
        target = self.blob_path(digest)
        if target.exists():
            return
        source = other.blob_path(digest)
        if not source.exists():
            raise LayoutError(f"{other.root}: blob {digest} is missing")
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)

    # -- index and images -------------------------------------------------------------------------------------------

    def manifests(self) -> list[Descriptor]:
        try:
            index = json.loads((self.root / "index.json").read_bytes())
        except (OSError, ValueError) as exc:
            raise LayoutError(f"{self.root}/index.json: {exc}") from None
        return [Descriptor.from_json(item) for item in index.get("manifests", [])]

    def _write_index(self, manifests: list[Descriptor]) -> None:
        index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [m.to_json() for m in manifests]}
        partial = self.root / ".index.json.partial"
        partial.write_bytes(_json(index))
        partial.replace(self.root / "index.json")

    def find(self, ref: str) -> Descriptor:
        """The manifest tagged `ref` (the index's `org.opencontainers.image.ref.name`)."""
        for manifest in self.manifests():
            if manifest.annotations.get(REF_ANNOTATION) == ref:
                return manifest
        raise LayoutError(f"{self.root}: no image tagged {ref!r}")

    def tag(self, ref: str, manifest: Descriptor) -> Descriptor:
        """Tag a manifest (or index) whose blob is here already `ref`, replacing an older entry of that tag, and
        return the index entry (used by lf_controlplane.images.registry.pull)."""
        if not self.blob_path(manifest.digest).exists():
            raise LayoutError(f"{self.root}: manifest {manifest.digest} is not in the layout")
        tagged = Descriptor(manifest.media_type, manifest.digest, manifest.size, {REF_ANNOTATION: ref})
        others = [m for m in self.manifests() if m.annotations.get(REF_ANNOTATION) != ref]
        self._write_index(sorted([*others, tagged], key=lambda m: m.annotations.get(REF_ANNOTATION, "")))
        return tagged

    def image(self, ref: str) -> Image:
        manifest = self.find(ref)
        if manifest.media_type != MANIFEST:
            raise LayoutError(f"{self.root}:{ref} is a {manifest.media_type}, not a single-platform image manifest")
        body = json.loads(self.read_blob(manifest))
        config_descriptor = Descriptor.from_json(body["config"])
        config = json.loads(self.read_blob(config_descriptor))
        layers = tuple(Descriptor.from_json(item) for item in body.get("layers", []))
        diff_ids = tuple(config.get("rootfs", {}).get("diff_ids", []))
        if len(diff_ids) != len(layers):
            raise LayoutError(f"{self.root}:{ref}: {len(layers)} layers but {len(diff_ids)} diff_ids")
        return Image(manifest, config, layers, diff_ids)

    def write_image(
        self,
        ref: str,
        *,
        base: Image | None,
        layers: Sequence[Layer],
        runtime: Runtime,
        history: Sequence[str] = (),
        annotations: Mapping[str, str] | None = None,
    ) -> Descriptor:
        """Write an image — `base`'s layers (whose blobs must be here already) then `layers` — with `runtime`, tag
        it `ref` (replacing an older image of that tag) and return its manifest's descriptor."""
        base_layers = base.layers if base is not None else ()
        base_diff_ids = base.diff_ids if base is not None else ()
        for digest in (*(d.digest for d in base_layers), *(layer.digest for layer in layers)):
            if not self.blob_path(digest).exists():
                raise LayoutError(f"{self.root}: layer {digest} is not in the layout")
        stamp = created()
        config_json: dict[str, Any] = {
            "architecture": (base.config.get("architecture") if base else None) or "amd64",
            "os": (base.config.get("os") if base else None) or "linux",
            "created": stamp,
            "config": runtime.to_json(),
            "rootfs": {"type": "layers", "diff_ids": [*base_diff_ids, *(layer.diff_id for layer in layers)]},
            "history": [
                *((base.config.get("history") or []) if base else []),
                *({"created": stamp, "created_by": step} for step in history),
            ],
        }
        config = self.put_bytes(CONFIG, _json(config_json))
        manifest_json = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": config.to_json(),
            "layers": [
                *(layer.to_json() for layer in base_layers),
                *({"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size} for layer in layers),
            ],
            **({"annotations": dict(annotations)} if annotations else {}),
        }
        return self.tag(ref, self.put_bytes(MANIFEST, _json(manifest_json)))
