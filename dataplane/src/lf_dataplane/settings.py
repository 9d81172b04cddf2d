"""Settings of the ingestor, read from a mapping (normally `os.environ`) so tests can pass plain dicts.

Every variable is optional; a bad value raises SettingsError with a message naming the variable. Durations take
the manifest syntax ("500ms", "10s", "2m") or a plain number of seconds; sizes take Kubernetes quantities ("64Ki",
"6Mi") or a plain number of bytes.

| variable | default | meaning |
|---|---|---|
| LF_HOST | 127.0.0.1 | address to listen on |
| LF_PORT | 8080 | port to listen on |
| LF_NATS_URL | nats://127.0.0.1:4222 | broker URL(s), comma-separated |
| LF_WORKERS | 1 | granian worker processes |
| LF_HTTP | 1 | `1` (HTTP/1.1 only: also cuts connections that never send a byte) or `auto` (HTTP/1.1 and h2c) |
| LF_HEADER_READ_TIMEOUT | 10s | time a client has to send the request head (granian `http1_header_read_timeout`) |
| LF_MAX_HEADER_BYTES | 64Ki | total size of the request headers (names + values); above it: 431 |
| LF_DRAIN_DELAY | 0 | after SIGTERM, keep serving this long with /readyz at 503 before closing the listener |
| LF_DRAIN_TIMEOUT | 65s | after the listener is closed, how long in-flight calls may take before workers are killed |
| LF_DEFAULT_TIMEOUT | 60s | sync timeout of a function whose route entry carries none |
| LF_DEFAULT_MAX_REQUEST_BYTES | 6Mi | request body limit of a function whose route entry carries none |
| LF_DEFAULT_MAX_RESPONSE_BYTES | 6Mi | response body limit of a function whose route entry carries none |
| LF_LOG_LEVEL | info | debug, info, warning, error |
| LF_MAX_INFLIGHT | 1024 | calls one worker forwards at once; more wait in its queue |
| LF_MAX_QUEUE | 1024 | calls waiting for a worker slot; beyond: 503 with Retry-After |
| LF_QUEUE_TIMEOUT | 2s | longest wait for a worker slot; then 503 with Retry-After |
| LF_FUNCTION_QUEUE | 1024 | calls waiting for one function's in-flight cap (route `max_inflight`); beyond: 429 |
| LF_NAMESPACE_MAX_INFLIGHT | 0 (half of LF_MAX_INFLIGHT) | calls of one namespace a worker forwards at once |
| LF_BODY_TIMEOUT | 10s | time a request body has to arrive in full, once the head is in; then 408 |
| LF_MAX_INFLIGHT_BODY_BYTES | 64Mi | request bodies (sync and async) one worker holds at once; beyond: 503 |
| LF_NAMESPACE_ASYNC_BACKLOG | 10000 | async calls of one namespace accepted and not finished; beyond: 429 (0: no cap) |
| LF_CACHE_MAX_BYTES | 64Mi | response cache, in-process tier, per worker |
| LF_CACHE_MAX_ENTRY_BYTES | 1Mi | larger answers are not cached |
| LF_VALKEY_URL | (none) | redis:// or rediss:// URL: shared cache tier, cluster-wide rate limits; unset: in-process |
| LF_VALKEY_TIMEOUT | 250ms | a Valkey call that takes longer counts as a failure |
| LF_VALKEY_FAILURE | open | when Valkey is down: open (local limits only) or closed (refuse rate-limited calls) |
| LF_RATE_LIMIT_MODE | batched | batched (local buckets synced every LF_RATE_LIMIT_SYNC) or exact (a Valkey call each) |
| LF_RATE_LIMIT_SYNC | 100ms | how often batched rate limits are synced through Valkey |
| LF_CLIENT_IP_HEADER | (none) | client IP for `rateLimit.key: ip` from this header (last entry; behind a proxy only) |
| LF_ASYNC_PUBLISH_TIMEOUT | 5s | an async call without a PubAck in this time is answered 503 |
| LF_CALLBACK_ALLOW_PRIVATE | false | `true`: callbacks may go to loopback/private/link-local addresses |
| LF_CALLBACK_RESOLVE_TIMEOUT | 2s | longest lookup of a callback host at async submit; then 503 (not stored) |
| LF_METRICS | 1 | `0`: no counting and no `/metrics` (for measuring what metrics cost) |
| LF_METRICS_DIR | (temp dir) | where each worker writes its metrics snapshot; unset: the server makes a temp dir |
| LF_METRICS_FLUSH | 1s | how often a worker writes its snapshot (how late a scrape may see its counts) |
| LF_ADMIN_PORT | 0 | the admin listener's port: `GET /metrics` (0: none; never on the public port) |
| LF_ADMIN_HOST | 127.0.0.1 | address of the admin listener (the chart sets 0.0.0.0 for the scrape) |
| LF_TRACE_TRUST_INCOMING | false | `true`: a caller's `traceparent` sampled flag decides; `false`: our sampler does |
| LF_LOGS_MAX_BYTES | 64Mi | size bound of the LF_LOGS stream (function stdout/stderr), created by the ingestor |
| LF_LOGS_MAX_AGE | 24h | age bound of the LF_LOGS stream |
| LF_STREAM_REPLICAS | 1 | replicas (1-5) of the streams and buckets the ingestor creates; 3 on a 3-node cluster |
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from lf_core.asynccalls.streams import MAX_STREAM_REPLICAS
from lf_core.contract.specs import ManifestError, parse_duration, parse_quantity

_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    nats_url: str = "nats://127.0.0.1:4222"
    workers: int = 1
    http: str = "1"  # safe on the internet by default: `auto` cannot cut a silent connection (docs/operations.md)
    header_read_timeout_s: float = 10.0
    max_header_bytes: int = 64 * 1024
    drain_delay_s: float = 0.0
    drain_timeout_s: float = 65.0
    default_timeout_s: float = 60.0
    default_max_request_bytes: int = 6 * 1024 * 1024
    default_max_response_bytes: int = 6 * 1024 * 1024
    log_level: str = "info"
    max_inflight: int = 1024
    max_queue: int = 1024
    queue_timeout_s: float = 2.0
    function_queue: int = 1024
    namespace_max_inflight: int = 0  # 0: half of max_inflight (`namespace_inflight_cap`)
    body_timeout_s: float = 10.0
    max_inflight_body_bytes: int = 64 * 1024 * 1024
    namespace_async_backlog: int = 10_000
    cache_max_bytes: int = 64 * 1024 * 1024
    cache_max_entry_bytes: int = 1024 * 1024
    valkey_url: str = ""
    valkey_timeout_s: float = 0.25
    valkey_fail_open: bool = True
    rate_limit_exact: bool = False
    rate_limit_sync_s: float = 0.1
    client_ip_header: str = ""
    async_publish_timeout_s: float = 5.0
    callback_allow_private: bool = False
    callback_resolve_timeout_s: float = 2.0
    metrics: bool = True
    metrics_dir: str = ""
    metrics_flush_s: float = 1.0
    admin_host: str = "127.0.0.1"
    admin_port: int = 0
    trace_trust_incoming: bool = False
    logs_max_bytes: int = 64 * 1024 * 1024
    logs_max_age_s: float = 24 * 3600.0
    stream_replicas: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read the LF_* variables of `env`; unset or empty variables keep their defaults.

        Raises:
            SettingsError: a value is malformed or out of range; the message names the variable.
        """
        d = cls()
        return cls(
            host=_text(env, "LF_HOST", d.host),
            port=_integer(env, "LF_PORT", d.port, low=0, high=65535),
            nats_url=_text(env, "LF_NATS_URL", d.nats_url),
            workers=_integer(env, "LF_WORKERS", d.workers, low=1, high=1024),
            http=_choice(env, "LF_HTTP", d.http, ("auto", "1")),
            header_read_timeout_s=_duration(env, "LF_HEADER_READ_TIMEOUT", d.header_read_timeout_s),
            max_header_bytes=_size(env, "LF_MAX_HEADER_BYTES", d.max_header_bytes),
            drain_delay_s=_duration(env, "LF_DRAIN_DELAY", d.drain_delay_s, allow_zero=True),
            drain_timeout_s=_duration(env, "LF_DRAIN_TIMEOUT", d.drain_timeout_s),
            default_timeout_s=_duration(env, "LF_DEFAULT_TIMEOUT", d.default_timeout_s),
            default_max_request_bytes=_size(env, "LF_DEFAULT_MAX_REQUEST_BYTES", d.default_max_request_bytes),
            default_max_response_bytes=_size(env, "LF_DEFAULT_MAX_RESPONSE_BYTES", d.default_max_response_bytes),
            log_level=_choice(env, "LF_LOG_LEVEL", d.log_level, _LOG_LEVELS),
            max_inflight=_integer(env, "LF_MAX_INFLIGHT", d.max_inflight, low=1, high=1_000_000),
            max_queue=_integer(env, "LF_MAX_QUEUE", d.max_queue, low=0, high=1_000_000),
            queue_timeout_s=_duration(env, "LF_QUEUE_TIMEOUT", d.queue_timeout_s, allow_zero=True),
            function_queue=_integer(env, "LF_FUNCTION_QUEUE", d.function_queue, low=0, high=1_000_000),
            namespace_max_inflight=_integer(
                env, "LF_NAMESPACE_MAX_INFLIGHT", d.namespace_max_inflight, low=0, high=1_000_000
            ),
            body_timeout_s=_duration(env, "LF_BODY_TIMEOUT", d.body_timeout_s),
            max_inflight_body_bytes=_size(env, "LF_MAX_INFLIGHT_BODY_BYTES", d.max_inflight_body_bytes),
            namespace_async_backlog=_integer(
                env, "LF_NAMESPACE_ASYNC_BACKLOG", d.namespace_async_backlog, low=0, high=1_000_000_000
            ),
            cache_max_bytes=_size(env, "LF_CACHE_MAX_BYTES", d.cache_max_bytes),
            cache_max_entry_bytes=_size(env, "LF_CACHE_MAX_ENTRY_BYTES", d.cache_max_entry_bytes),
            valkey_url=_text(env, "LF_VALKEY_URL", d.valkey_url),
            valkey_timeout_s=_duration(env, "LF_VALKEY_TIMEOUT", d.valkey_timeout_s),
            valkey_fail_open=_choice(env, "LF_VALKEY_FAILURE", "open", ("open", "closed")) == "open",
            rate_limit_exact=_choice(env, "LF_RATE_LIMIT_MODE", "batched", ("batched", "exact")) == "exact",
            rate_limit_sync_s=_duration(env, "LF_RATE_LIMIT_SYNC", d.rate_limit_sync_s),
            client_ip_header=_text(env, "LF_CLIENT_IP_HEADER", d.client_ip_header).lower(),
            async_publish_timeout_s=_duration(env, "LF_ASYNC_PUBLISH_TIMEOUT", d.async_publish_timeout_s),
            callback_allow_private=_choice(env, "LF_CALLBACK_ALLOW_PRIVATE", "false", ("true", "false")) == "true",
            callback_resolve_timeout_s=_duration(env, "LF_CALLBACK_RESOLVE_TIMEOUT", d.callback_resolve_timeout_s),
            metrics=_choice(env, "LF_METRICS", "1", ("0", "1")) == "1",
            metrics_dir=_text(env, "LF_METRICS_DIR", d.metrics_dir),
            metrics_flush_s=_duration(env, "LF_METRICS_FLUSH", d.metrics_flush_s),
            admin_host=_text(env, "LF_ADMIN_HOST", d.admin_host),
            admin_port=_integer(env, "LF_ADMIN_PORT", d.admin_port, low=0, high=65535),
            trace_trust_incoming=_choice(env, "LF_TRACE_TRUST_INCOMING", "false", ("true", "false")) == "true",
            logs_max_bytes=_size(env, "LF_LOGS_MAX_BYTES", d.logs_max_bytes),
            logs_max_age_s=_duration(env, "LF_LOGS_MAX_AGE", d.logs_max_age_s),
            stream_replicas=_integer(env, "LF_STREAM_REPLICAS", d.stream_replicas, low=1, high=MAX_STREAM_REPLICAS),
        )

    @property
    def nats_servers(self) -> list[str]:
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]

    @property
    def namespace_inflight_cap(self) -> int:
        """Calls of one namespace a worker forwards at once: LF_NAMESPACE_MAX_INFLIGHT, by default half the worker's
        cap (at least 1), so a tenant's burst leaves the other half to the others; never above the worker's cap."""
        cap = self.namespace_max_inflight or max(1, self.max_inflight // 2)
        return min(cap, self.max_inflight)

    @property
    def header_read_timeout_ms(self) -> int:
        return max(1, round(self.header_read_timeout_s * 1000))

    @property
    def drain_timeout_whole_s(self) -> int:
        """granian takes whole seconds for its worker kill timeout; round up so we never cut a drain short."""
        return max(1, math.ceil(self.drain_timeout_s))


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def _text(env: Mapping[str, str], name: str, default: str) -> str:
    return _raw(env, name) or default


def _integer(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}: {raw!r} is not an integer") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}: {value} is out of range [{low}, {high}]")
    return value


def _duration(env: Mapping[str, str], name: str, default: float, *, allow_zero: bool = False) -> float:
    raw = _raw(env, name)
    if raw is None:
        return default
    if allow_zero and raw in ("0", "0s", "0ms", "0.0"):
        return 0.0
    try:
        return parse_duration(raw, name)
    except ManifestError as exc:
        raise SettingsError(str(exc)) from None


def _size(env: Mapping[str, str], name: str, default: int) -> int:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        return parse_quantity(raw, name)
    except ManifestError as exc:
        raise SettingsError(str(exc)) from None


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = _raw(env, name)
    if raw is None:
        return default
    if raw.lower() not in choices:
        raise SettingsError(f"{name}: {raw!r} is not one of {', '.join(choices)}")
    return raw.lower()
