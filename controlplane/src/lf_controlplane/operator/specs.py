"""The custom resources, parsed once at the edge: a kopf body in, a frozen object (or InvalidSpec) out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from lf_core.contract import specs
from lf_core.contract.names import InvalidName, check_name

GROUP = "litefunctions.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


class InvalidSpec(ValueError):  # noqa: N818 (named like lf_core's InvalidName)
    """The object's spec cannot be used; the message names the field."""


@dataclass(frozen=True)
class Owner:
    """What a child's ownerReference needs."""

    kind: str
    name: str
    uid: str


@dataclass(frozen=True)
class FunctionObject:
    name: str
    namespace: str
    uid: str
    generation: int
    spec: specs.FunctionSpec
    function: specs.Function
    raw_spec: Mapping[str, Any]

    @property
    def owner(self) -> Owner:
        return Owner("Function", self.name, self.uid)


@dataclass(frozen=True)
class TriggerObject:
    name: str
    namespace: str
    uid: str
    generation: int
    trigger: specs.Trigger


def _meta(body: Mapping[str, Any]) -> tuple[str, str, str, int]:
    meta = body.get("metadata", {})
    return (
        str(meta.get("name", "")),
        str(meta.get("namespace", "")),
        str(meta.get("uid", "")),
        int(meta.get("generation", 0)),
    )


def parse_function(body: Mapping[str, Any]) -> FunctionObject:
    """A Function custom resource (as kopf or the API returns it). Raises InvalidSpec."""
    name, namespace, uid, generation = _meta(body)
    raw = dict(body.get("spec") or {})
    try:
        spec = msgspec.convert(raw, specs.FunctionSpec)
        manifest = specs.FunctionManifest(
            api_version=API_VERSION, kind="Function", metadata=specs.Metadata(name=name, namespace=namespace), spec=spec
        )
        function = specs.resolve(manifest)
    except msgspec.ValidationError as exc:
        raise InvalidSpec(f"spec: {exc}") from None
    except (specs.ManifestError, InvalidName) as exc:
        raise InvalidSpec(str(exc)) from None
    if spec.source is not None and spec.source.files is None:
        raise InvalidSpec("spec.source: only inline files are served by this operator version (archive, git: later)")
    if spec.source is None and spec.image is None:
        raise InvalidSpec("spec: set source (lf deploy fills it from the folder) or image")
    if spec.runtime != "python" and spec.image is None:
        raise InvalidSpec(f"spec.image: {spec.runtime} functions run from an image built with their runtime")
    return FunctionObject(name, namespace, uid, generation, spec, function, raw)


def parse_trigger(body: Mapping[str, Any]) -> TriggerObject:
    """A Trigger custom resource. Raises InvalidSpec."""
    name, namespace, uid, generation = _meta(body)
    try:
        spec = msgspec.convert(dict(body.get("spec") or {}), specs.TriggerSpec)
        trigger = specs.resolve_trigger(name, namespace, spec)
    except msgspec.ValidationError as exc:
        raise InvalidSpec(f"spec: {exc}") from None
    except specs.ManifestError as exc:
        raise InvalidSpec(str(exc)) from None
    return TriggerObject(name, namespace, uid, generation, trigger)


def check_names(name: str, namespace: str) -> None:
    """Raises InvalidSpec unless both are DNS-1123 labels (what NATS subjects are built from)."""
    try:
        check_name(name, "metadata.name")
        check_name(namespace, "metadata.namespace")
    except InvalidName as exc:
        raise InvalidSpec(str(exc)) from None
