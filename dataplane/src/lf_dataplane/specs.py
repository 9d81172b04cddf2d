"""The typed models of a `Function` manifest (DESIGN §4-5): the one source for `function.yaml`, the CRD and the API.

Durations are strings such as "500ms", "30s", "2m"; byte sizes are Kubernetes quantities such as "6Mi" or plain
integers. Both are checked when a manifest is decoded, so a bad value is refused with a message naming the field.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

import msgspec

from lf_dataplane.names import DEFAULT_NAMESPACE, InvalidName, check_name

API_VERSION = "litefunctions.io/v1alpha1"

_DURATION = re.compile(r"(?P<num>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_QUANTITY = re.compile(r"(?P<num>\d+)(?P<unit>Ki|Mi|Gi|k|M|G)?")
_QUANTITY_UNITS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


class ManifestError(ValueError):
    """A function manifest that cannot be used, with a message naming the field."""


def parse_duration(value: str | float, field: str = "duration") -> float:
    """Seconds from "250ms", "30s", "1.5m", "1h" or a plain number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(str(value).strip())
        if match is None:
            raise ManifestError(f"{field}: {value!r} is not a duration (use e.g. '500ms', '30s', '2m')")
        seconds = float(match["num"]) * _DURATION_UNITS[match["unit"]]
    if seconds <= 0:
        raise ManifestError(f"{field}: must be positive, got {value!r}")
    return seconds


def parse_quantity(value: str | int, field: str = "size") -> int:
    """Bytes from a Kubernetes quantity ("6Mi", "512k") or a plain integer."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = _QUANTITY.fullmatch(str(value).strip())
        if match is None:
            raise ManifestError(f"{field}: {value!r} is not a size (use e.g. '6Mi', '64Ki' or a number of bytes)")
        size = int(match["num"]) * _QUANTITY_UNITS[match["unit"]]
    if size <= 0:
        raise ManifestError(f"{field}: must be positive, got {value!r}")
    return size


Duration = str | float
Quantity = str | int


class Limits(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Per-function limits (DESIGN §4 defaults)."""

    request_body: Quantity = "6Mi"
    response_body: Quantity = "6Mi"


class Scaling(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    min: Annotated[int, msgspec.Meta(ge=0)] = 1
    max: Annotated[int, msgspec.Meta(ge=1)] = 10
    target_concurrency: Annotated[int, msgspec.Meta(ge=1)] | None = None
    scale_to_zero_after: Duration | None = None
    mode: Literal["builtin", "keda", "none"] = "builtin"


_CACHEABLE_METHODS = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class Cache(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Response caching in the ingestor: `ttl` how long an answer is served again, `vary` the request headers that
    tell answers apart. Only GET and HEAD are cached unless `methods` opts others in (their body is then part of
    the key)."""

    ttl: Duration
    vary: list[str] = msgspec.field(default_factory=list)
    methods: list[_CACHEABLE_METHODS] = msgspec.field(default_factory=lambda: ["GET", "HEAD"])


class RateLimit(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Token bucket in the ingestor: `rps` sustained calls per second, `burst` the bucket size (default: rps
    rounded up), `key` what is limited: each client IP or the function as a whole."""

    rps: Annotated[float, msgspec.Meta(gt=0)]
    burst: Annotated[int, msgspec.Meta(ge=1)] | None = None
    key: Literal["ip", "function"] = "ip"


class CacheRule(msgspec.Struct, frozen=True, kw_only=True):
    """A resolved `cache`: what the ingestor acts on (header names lowercased)."""

    ttl_s: float
    vary: tuple[str, ...] = ()
    methods: tuple[str, ...] = ("GET", "HEAD")


class RateRule(msgspec.Struct, frozen=True, kw_only=True):
    """A resolved `rateLimit`."""

    rps: float
    burst: int
    key: str = "ip"


class InlineSource(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Code carried in the manifest itself: file name → content."""

    files: dict[str, str]


class FunctionSpec(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    runtime: Literal["python", "go", "rust"] = "python"
    handler: str = "handler.handle"
    source: InlineSource | None = None
    image: str | None = None
    env: dict[str, str] = msgspec.field(default_factory=dict)
    secrets: list[str] = msgspec.field(default_factory=list)
    timeout: Duration = "60s"
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 16
    replicas: Annotated[int, msgspec.Meta(ge=0, le=1_000)] | None = None
    scaling: Scaling = msgspec.field(default_factory=Scaling)
    limits: Limits = msgspec.field(default_factory=Limits)
    cache: Cache | None = None
    rate_limit: RateLimit | None = None


class Metadata(msgspec.Struct, kw_only=True):
    name: str
    namespace: str = DEFAULT_NAMESPACE
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    annotations: dict[str, str] = msgspec.field(default_factory=dict)


class FunctionManifest(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    api_version: str
    kind: Literal["Function"]
    metadata: Metadata
    spec: FunctionSpec = msgspec.field(default_factory=FunctionSpec)


class Function(msgspec.Struct, frozen=True, kw_only=True):
    """A validated function, with every duration and size resolved: what the data plane and `lf dev` act on."""

    name: str
    namespace: str
    runtime: str
    handler: str
    env: dict[str, str]
    secrets: tuple[str, ...]
    timeout_s: float
    concurrency: int
    replicas: int
    max_request_bytes: int
    max_response_bytes: int
    cache: CacheRule | None = None
    rate_limit: RateRule | None = None


def load_manifest(data: Any, *, source: str = "manifest") -> Function:
    """Validate a decoded `function.yaml` (a mapping) and resolve it into a Function.

    Raises ManifestError with a message that names `source` and the offending field.
    """
    try:
        manifest = msgspec.convert(data, FunctionManifest)
    except msgspec.ValidationError as exc:
        raise ManifestError(f"{source}: {exc}") from None
    if manifest.api_version != API_VERSION:
        raise ManifestError(f"{source}: apiVersion must be {API_VERSION!r}, got {manifest.api_version!r}")
    try:
        return resolve(manifest)
    except (ManifestError, InvalidName) as exc:
        raise ManifestError(f"{source}: {exc}") from None


def resolve(manifest: FunctionManifest) -> Function:
    spec = manifest.spec
    if spec.handler.count(".") < 1 and ":" not in spec.handler:
        raise ManifestError(f"spec.handler: {spec.handler!r} must name 'module.function'")
    replicas = spec.replicas if spec.replicas is not None else max(spec.scaling.min, 1)
    return Function(
        name=check_name(manifest.metadata.name, "metadata.name"),
        namespace=check_name(manifest.metadata.namespace, "metadata.namespace"),
        runtime=spec.runtime,
        handler=spec.handler,
        env=dict(spec.env),
        secrets=tuple(check_name(s, "spec.secrets[]") for s in spec.secrets),
        timeout_s=parse_duration(spec.timeout, "spec.timeout"),
        concurrency=spec.concurrency,
        replicas=replicas,
        max_request_bytes=parse_quantity(spec.limits.request_body, "spec.limits.requestBody"),
        max_response_bytes=parse_quantity(spec.limits.response_body, "spec.limits.responseBody"),
        cache=_cache_rule(spec.cache),
        rate_limit=_rate_rule(spec.rate_limit),
    )


def _cache_rule(cache: Cache | None) -> CacheRule | None:
    if cache is None:
        return None
    vary = tuple(dict.fromkeys(h.strip().lower() for h in cache.vary))
    if any(not h or not h.isascii() or " " in h or ":" in h for h in vary):
        raise ManifestError(f"spec.cache.vary: {cache.vary!r} must be header names")
    methods = set(cache.methods)
    if "GET" in methods:
        methods.add("HEAD")  # a HEAD is answered from the GET's entry
    return CacheRule(ttl_s=parse_duration(cache.ttl, "spec.cache.ttl"), vary=vary, methods=tuple(sorted(methods)))


def _rate_rule(limit: RateLimit | None) -> RateRule | None:
    if limit is None:
        return None
    burst = limit.burst if limit.burst is not None else max(1, math.ceil(limit.rps))
    return RateRule(rps=limit.rps, burst=burst, key=limit.key)
