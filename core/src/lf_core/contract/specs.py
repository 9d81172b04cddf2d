"""The typed models of a `Function` manifest: the one source for `function.yaml`, the CRD and the API.

Durations are strings such as "500ms", "30s", "2m"; byte sizes are Kubernetes quantities such as "6Mi" or plain
integers. Both are checked when a manifest is decoded, so a bad value is refused with a message naming the field.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from lf_core.contract.confinement import nats_trigger_error
from lf_core.contract.names import DEFAULT_NAMESPACE, InvalidName, check_name
from lf_core.contract.paths import reserved_path_error
from lf_core.ssrf import UnsafeUrl, check_url

API_VERSION = "litefunctions.io/v1alpha1"

_DURATION = re.compile(r"(?P<num>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_QUANTITY = re.compile(r"(?P<num>\d+)(?P<unit>Ki|Mi|Gi|k|M|G)?")
_QUANTITY_UNITS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


BROKER_MAX_PAYLOAD = 8 * 1024 * 1024
"""The broker's `max_payload` (bytes): what `lf dev`'s nats-server (lf_controlplane.natsserver) and the chart's
nats.conf set. A request or response travels as one broker message, so no body may be larger."""
ENVELOPE_MARGIN = 1024 * 1024
"""Room kept in a broker message beside the body: the envelope's fixed fields and strings (call id, method, path,
query, trace context), the headers (64 KiB at most: the ingestor answers 431 above), route params, and the NATS
headers of an async call or a dead letter (callback URL, error). A fixed, conservative bound (docs/protocol.md)."""
MAX_BODY_BYTES = BROKER_MAX_PAYLOAD - ENVELOPE_MARGIN
"""The cap on `limits.requestBody` and `limits.responseBody` (7 MiB): larger values are refused in the manifest,
not buffered by the shared ingestor and then refused by the broker."""
MAX_TIMEOUT_S = 3600.0
"""The cap on `spec.timeout` (1 h): a call's budget travels as u32 milliseconds (49.7 days at most), and a replica
drains for up to its timeout on every rollout (terminationGracePeriodSeconds)."""


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
    """Per-function limits on request and response bodies (6Mi each by default; docs/architecture.md, "Limits")."""

    request_body: Quantity = "6Mi"
    response_body: Quantity = "6Mi"


class Scaling(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """`min` replicas (at least 1 until scale-from-zero exists). `max`, `targetConcurrency`, `scaleToZeroAfter` and
    `mode: keda` belong to an autoscaler, which does not exist yet: they are refused until it does."""

    min: Annotated[int, msgspec.Meta(ge=0)] = 1
    max: Annotated[int, msgspec.Meta(ge=1)] | None = None
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


class Errors(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """What callers learn when the handler fails: by default a generic message (the exception's text, which may name
    files, queries or secrets, stays in the function's logs and its async call records); `expose: true` sends it."""

    expose: bool = False


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


class AsyncRule(msgspec.Struct, frozen=True, kw_only=True):
    """A resolved `async` (the defaults when the spec has none): what the dispatcher acts on."""

    max_attempts: int = 3
    backoff_s: float = 1.0
    max_age_s: float | None = None
    result_ttl_s: float = 24 * 3600.0
    max_concurrency: int | None = None
    sink: str = ""
    """spec.async.sink: where each final result goes as a CloudEvent ("" none)."""


_DNS_LABEL = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=63, pattern=_DNS_LABEL)]


class ArchiveSource(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A tar.gz or zip of the function folder, checked against its SHA-256 before use."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048, pattern="^(https?|s3)://")]
    sha256: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]


class GitSource(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A folder of a git repository at a ref (branch, tag or commit)."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    ref: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] = "main"
    path: Annotated[str, msgspec.Meta(max_length=1024)] = "."


class Source(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where the code comes from, exactly one of: `files` (inline: file path → text, what `lf deploy` fills in),
    `archive` or `git`. A spec without `source` (and without `image`) means "the code next to function.yaml"."""

    files: dict[str, str] | None = None
    archive: ArchiveSource | None = None
    git: GitSource | None = None

    def kinds(self) -> list[str]:
        return [kind for kind in ("files", "archive", "git") if getattr(self, kind) is not None]


InlineSource = Source  # the name of the first version, which only had `files`


class Resources(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """CPU and memory of each replica, as in a Kubernetes container (`cpu: 100m`, `memory: 128Mi`)."""

    requests: Annotated[dict[str, str | int], msgspec.Meta(max_length=16)] | None = None
    limits: Annotated[dict[str, str | int], msgspec.Meta(max_length=16)] | None = None


class Auth(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Who may invoke: anyone (`public`), holders of an API key, or bearers of a JWT with one of `roles`."""

    mode: Literal["public", "apiKey", "jwt"] = "public"
    roles: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=63)]], msgspec.Meta(max_length=32)] = (
        msgspec.field(default_factory=list)
    )


class AsyncOptions(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Async calls: `retries` after the first attempt on retryable failures, or `maxAttempts` in total (set one;
    default 3 in total), backoff doubling from `backoff`, calls older than `maxAge` dropped to the dead letters,
    results kept `resultTTL`, at most `maxConcurrency` running at once over all replicas (default: unbounded but
    for each replica's `concurrency` and the runtime's 1,000 in flight). `sink`: an http(s) URL each final result
    (succeeded or dead) is POSTed to as a CloudEvent, signed like a callback (docs/protocol.md, "CloudEvents out")."""

    retries: Annotated[int, msgspec.Meta(ge=0, le=20)] | None = None
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=21)] | None = None
    backoff: Duration = "1s"
    max_age: Duration | None = None
    result_ttl: Duration = msgspec.field(default="24h", name="resultTTL")
    max_concurrency: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None
    sink: Annotated[str, msgspec.Meta(min_length=1, max_length=2048, pattern="^https?://")] | None = None


class Version(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A named version of the function that `traffic` can send a share of calls to."""

    name: Name
    image: str | None = None
    source: Source | None = None
    env: dict[str, str] | None = None


class TrafficTarget(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    version: Name
    percent: Annotated[int, msgspec.Meta(ge=0, le=100)]


class FunctionSpec(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    runtime: Literal["python", "go", "rust"] = "python"
    handler: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] = "handler.handle"
    source: Source | None = None
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
    errors: Errors | None = None
    resources: Resources | None = None
    auth: Auth | None = None
    async_: AsyncOptions | None = msgspec.field(default=None, name="async")
    versions: Annotated[list[Version], msgspec.Meta(max_length=16)] | None = None
    traffic: Annotated[list[TrafficTarget], msgspec.Meta(max_length=16)] | None = None


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
    async_: AsyncRule = msgspec.field(default_factory=AsyncRule)
    expose_errors: bool = False
    """spec.errors.expose: callers get the handler's exception text (else a generic message)."""


_M = TypeVar("_M", "FunctionManifest", "TriggerManifest")


def _convert(data: Any, kind: type[_M], source: str) -> _M:
    """`data` as a `kind` of our apiVersion; ManifestError naming `source` and the field otherwise."""
    try:
        manifest = msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise ManifestError(f"{source}: {exc}") from None
    if manifest.api_version != API_VERSION:
        raise ManifestError(f"{source}: apiVersion must be {API_VERSION!r}, got {manifest.api_version!r}")
    return manifest


def load_manifest(data: Any, *, source: str = "manifest") -> Function:
    """Validate a decoded `function.yaml` (a mapping) and resolve it into a Function.

    Raises ManifestError with a message that names `source` and the offending field.
    """
    manifest = _convert(data, FunctionManifest, source)
    try:
        return resolve(manifest)
    except (ManifestError, InvalidName) as exc:
        raise ManifestError(f"{source}: {exc}") from None


def resolve(manifest: FunctionManifest) -> Function:
    spec = manifest.spec
    if spec.handler.count(".") < 1 and ":" not in spec.handler:
        raise ManifestError(f"spec.handler: {spec.handler!r} must name 'module.function'")
    check_cluster_fields(spec)
    check_supported(spec)
    replicas = spec.replicas if spec.replicas is not None else max(spec.scaling.min, 1)
    return Function(
        name=check_name(manifest.metadata.name, "metadata.name"),
        namespace=check_name(manifest.metadata.namespace, "metadata.namespace"),
        runtime=spec.runtime,
        handler=spec.handler,
        env=dict(spec.env),
        secrets=tuple(check_name(s, "spec.secrets[]") for s in spec.secrets),
        timeout_s=_timeout(spec.timeout),
        concurrency=spec.concurrency,
        replicas=replicas,
        max_request_bytes=_body_limit(spec.limits.request_body, "spec.limits.requestBody"),
        max_response_bytes=_body_limit(spec.limits.response_body, "spec.limits.responseBody"),
        cache=_cache_rule(spec.cache),
        rate_limit=_rate_rule(spec.rate_limit),
        async_=_async_rule(spec.async_),
        expose_errors=spec.errors is not None and spec.errors.expose,
    )


def _timeout(value: Duration) -> float:
    seconds = parse_duration(value, "spec.timeout")
    if seconds > MAX_TIMEOUT_S:
        raise ManifestError(f"spec.timeout: {value!r} is over the platform's maximum of {MAX_TIMEOUT_S:g}s (1h)")
    return seconds


def _body_limit(value: Quantity, field: str) -> int:
    size = parse_quantity(value, field)
    if size > MAX_BODY_BYTES:
        raise ManifestError(
            f"{field}: {value!r} is over the cap of {MAX_BODY_BYTES} bytes (7Mi: the broker's max_payload of "
            f"{BROKER_MAX_PAYLOAD} bytes less {ENVELOPE_MARGIN} for the envelope and headers)"
        )
    return size


def unsupported_fields(spec: FunctionSpec) -> list[str]:
    """The fields of `spec` the schema accepts but nothing serves yet, as paths (`spec.scaling.max`).

    Accepted and ignored, they would be a trap (a `scaling.max` that bounds nothing, an `auth` that lets everyone
    in), so `resolve` refuses them, for `lf dev`, `lf deploy` and the operator alike. Each issue that implements
    one removes its line here.
    """
    fields = []
    if spec.versions:
        fields.append("spec.versions")  # no per-version Deployments or routing yet
    if spec.traffic:
        fields.append("spec.traffic")  # the ingestor sends every call to the one Deployment
    scaling = spec.scaling
    if scaling.max is not None:  # no autoscaler: replicas are spec.replicas or scaling.min
        fields.append("spec.scaling.max")
    if scaling.target_concurrency is not None:
        fields.append("spec.scaling.targetConcurrency")
    if scaling.scale_to_zero_after is not None:
        fields.append("spec.scaling.scaleToZeroAfter")
    if scaling.mode == "keda":
        fields.append("spec.scaling.mode")  # no ScaledObject is made: the Deployment would keep its last count
    if spec.auth is not None and spec.auth.mode != "public":
        fields.append("spec.auth.mode")  # callers are not authenticated yet (the identity issue)
    if spec.auth is not None and spec.auth.roles:
        fields.append("spec.auth.roles")
    return fields


def check_supported(spec: FunctionSpec) -> None:
    """Raises ManifestError naming every field of `unsupported_fields`."""
    fields = unsupported_fields(spec)
    if fields:
        raise ManifestError(
            f"{', '.join(fields)}: not served yet by this version of the platform (accepted and ignored, "
            f"{'it' if len(fields) == 1 else 'they'} would do nothing): remove {'it' if len(fields) == 1 else 'them'}"
        )


def unsupported_trigger_fields(spec: TriggerSpec | Trigger) -> list[str]:
    """The kinds of `spec` nothing serves yet, as paths: none since the dispatcher runs cron and NATS triggers
    (HTTP triggers are routes the ingestor serves). Kept for the kinds to come."""
    del spec
    return []


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


def _async_rule(options: AsyncOptions | None) -> AsyncRule:
    if options is None:
        return AsyncRule()
    if options.retries is not None and options.max_attempts is not None:
        if options.max_attempts != options.retries + 1:
            raise ManifestError(
                f"spec.async: retries {options.retries} and maxAttempts {options.max_attempts} disagree "
                "(maxAttempts counts the first attempt; set one of them)"
            )
    if options.max_attempts is not None:
        attempts = options.max_attempts
    else:
        attempts = (options.retries if options.retries is not None else 2) + 1
    return AsyncRule(
        max_attempts=attempts,
        backoff_s=parse_duration(options.backoff, "spec.async.backoff"),
        max_age_s=parse_duration(options.max_age, "spec.async.maxAge") if options.max_age is not None else None,
        result_ttl_s=parse_duration(options.result_ttl, "spec.async.resultTTL"),
        max_concurrency=options.max_concurrency,
        sink=_sink(options.sink),
    )


def _sink(url: str | None) -> str:
    """A well-formed http(s) URL; whether its host is public is checked at each delivery (the dispatcher's
    LF_CALLBACK_ALLOW_PRIVATE decides, and a name's addresses may change)."""
    if url is None:
        return ""
    try:
        check_url(url, allow_private=True)
    except UnsafeUrl as exc:
        raise ManifestError(f"spec.async.sink: {str(exc).replace('callback URL', 'sink URL')}") from None
    return url


def _rate_rule(limit: RateLimit | None) -> RateRule | None:
    if limit is None:
        return None
    burst = limit.burst if limit.burst is not None else max(1, math.ceil(limit.rps))
    return RateRule(rps=limit.rps, burst=burst, key=limit.key)


def check_cluster_fields(spec: FunctionSpec) -> None:
    """Check what the schema cannot: one kind of source, durations, traffic naming known versions summing to 100.

    The CRD's CEL rules say the same for `kubectl apply`; this is the check `lf dev`, `lf deploy` and the operator
    share. Raises ManifestError naming the field.
    """
    _check_source(spec.source, "spec.source")
    if spec.async_ is not None:
        parse_duration(spec.async_.backoff, "spec.async.backoff")
        parse_duration(spec.async_.result_ttl, "spec.async.resultTTL")
        if spec.async_.max_age is not None:
            parse_duration(spec.async_.max_age, "spec.async.maxAge")
    _check_versions(spec)
    if spec.resources is not None:
        for field, values in (("requests", spec.resources.requests), ("limits", spec.resources.limits)):
            for key, value in (values or {}).items():
                if not _RESOURCE_QUANTITY.fullmatch(str(value)):
                    raise ManifestError(f"spec.resources.{field}.{key}: {value!r} is not a Kubernetes quantity")


def _check_source(source: Source | None, field: str) -> None:
    if source is not None and len(source.kinds()) != 1:
        raise ManifestError(f"{field}: set exactly one of files, archive, git (got {source.kinds() or 'none'})")


def _check_versions(spec: FunctionSpec) -> None:
    versions = [v.name for v in spec.versions or ()]
    if len(set(versions)) != len(versions):
        raise ManifestError(f"spec.versions: names must be unique, got {versions}")
    for version in spec.versions or ():
        _check_source(version.source, f"spec.versions[{version.name}].source")
    if spec.traffic:
        unknown = [t.version for t in spec.traffic if t.version not in versions]
        if unknown:
            raise ManifestError(f"spec.traffic: unknown versions {unknown} (declare them in spec.versions)")
        total = sum(t.percent for t in spec.traffic)
        if total != 100:
            raise ManifestError(f"spec.traffic: percents must add up to 100, got {total}")


_RESOURCE_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?")


# -- Trigger -----------------------------------------------------------------------------------------------------

HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class HttpTrigger(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Serve the function at `path` (segments literal, `{param}` or a last `{*rest}`) on `host` ("" any host,
    "api.example.com", or "*.example.com"), for `methods` (empty: any)."""

    path: Annotated[str, msgspec.Meta(min_length=1, max_length=1024, pattern="^/")]
    host: Annotated[str, msgspec.Meta(max_length=255)] = ""
    methods: Annotated[list[HttpMethod], msgspec.Meta(max_length=7)] = msgspec.field(default_factory=list)


ConcurrencyPolicy = Literal["Allow", "Forbid", "Replace"]
HeaderName = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern="^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")]
MAX_STARTING_DEADLINE_S = 86400
"""The cap on `startingDeadlineSeconds` (24 h): a run's deterministic call id is recognised by its record in
LF_RESULTS, kept 24 h by default, so a run older than that could not be told apart from one never fired."""
DEFAULT_STARTING_DEADLINE_S = 60


class CronTrigger(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Call the function on a cron `schedule` in `timezone` (an IANA name), POSTing `body` with `headers`.

    `schedule` has 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds last (croniter's
    form). `concurrencyPolicy` as a Kubernetes CronJob's: `Allow` every run, `Forbid` skips a run while the
    previous one is not finished, `Replace` cancels the previous one if it is still queued (a running call is
    not interrupted). Runs missed (no dispatcher leading, or a leader change) are fired late when less than
    `startingDeadlineSeconds` old (default 60, at most 86400)."""

    schedule: Annotated[str, msgspec.Meta(min_length=9, max_length=128)]
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "UTC"
    body: Annotated[str, msgspec.Meta(max_length=65536)] = ""
    headers: Annotated[dict[HeaderName, Annotated[str, msgspec.Meta(max_length=4096)]], msgspec.Meta(max_length=32)] = (
        msgspec.field(default_factory=dict)
    )
    concurrency_policy: ConcurrencyPolicy = "Allow"
    starting_deadline_seconds: Annotated[int, msgspec.Meta(ge=1, le=MAX_STARTING_DEADLINE_S)] | None = None


class NatsTrigger(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Call the function (an async call) for each message on `subject`, which must be under `ev.{namespace}.>`.

    Without `stream`: a core NATS subscription, shared by the dispatcher replicas as a queue group; at most once
    (a message published while no dispatcher listens, or lost with one, is gone). With `stream` (named
    `EV_{namespace}` or `EV_{namespace}_{anything}`): a durable pull consumer on it filtered by `subject`; at least
    once (a message is acknowledged only once its async call is stored). The message's headers become the call's
    request headers (docs: lf_core.contract.confinement for the rules)."""

    subject: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    stream: Annotated[str, msgspec.Meta(max_length=255)] = ""


class TriggerSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What calls `function` (in the trigger's namespace): exactly one of `http`, `cron`, `nats`."""

    function: Name
    http: HttpTrigger | None = None
    cron: CronTrigger | None = None
    nats: NatsTrigger | None = None

    def kinds(self) -> list[str]:
        return [kind for kind in ("http", "cron", "nats") if getattr(self, kind) is not None]


class TriggerManifest(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    api_version: str
    kind: Literal["Trigger"]
    metadata: Metadata
    spec: TriggerSpec


class Trigger(msgspec.Struct, frozen=True, kw_only=True):
    """A validated trigger: `kind` names the one of `http`, `cron`, `nats` that is set."""

    name: str
    namespace: str
    function: str
    kind: str
    http: HttpTrigger | None = None
    cron: CronTrigger | None = None
    nats: NatsTrigger | None = None


def resolve_trigger(name: str, namespace: str, spec: TriggerSpec) -> Trigger:
    """Raises ManifestError when the spec is not exactly one kind of trigger or names are not DNS labels."""
    kinds = spec.kinds()
    if len(kinds) != 1:
        raise ManifestError(f"spec: set exactly one of http, cron, nats (got {kinds or 'none'})")
    if spec.http is not None and (reserved := reserved_path_error(spec.http.path)) is not None:
        raise ManifestError(reserved)
    if spec.cron is not None:
        check_cron(spec.cron)
    if spec.nats is not None and (refused := nats_trigger_error(namespace, spec.nats.subject, spec.nats.stream)):
        raise ManifestError(refused)
    try:
        return Trigger(
            name=check_name(name, "metadata.name"),
            namespace=check_name(namespace, "metadata.namespace"),
            function=check_name(spec.function, "spec.function"),
            kind=kinds[0],
            http=spec.http,
            cron=spec.cron,
            nats=spec.nats,
        )
    except InvalidName as exc:
        raise ManifestError(str(exc)) from None


def load_trigger(data: Any, *, source: str = "manifest") -> Trigger:
    """Validate a decoded Trigger manifest (a mapping). Raises ManifestError naming `source` and the field."""
    manifest = _convert(data, TriggerManifest, source)
    try:
        return resolve_trigger(manifest.metadata.name, manifest.metadata.namespace, manifest.spec)
    except ManifestError as exc:
        raise ManifestError(f"{source}: {exc}") from None


def check_cron(cron: CronTrigger) -> None:
    """A schedule croniter accepts (5 fields, or 6 with seconds last) and an IANA time zone; ManifestError naming
    the field otherwise. croniter is imported here only (the control plane and the dispatcher carry it; a
    function's replica never resolves a Trigger)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from croniter import croniter  # type: ignore[import-untyped]

    fields = cron.schedule.split()
    if len(fields) not in (5, 6):
        raise ManifestError(
            f"spec.cron.schedule: {cron.schedule!r} has {len(fields)} fields; use 5 (minute hour day-of-month month "
            "day-of-week) or 6 (the same, then seconds)"
        )
    if not croniter.is_valid(cron.schedule):
        raise ManifestError(f"spec.cron.schedule: {cron.schedule!r} is not a valid cron schedule")
    try:
        ZoneInfo(cron.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ManifestError(
            f"spec.cron.timezone: {cron.timezone!r} is not a known IANA time zone (e.g. 'UTC', 'Europe/Paris')"
        ) from None
