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
| LF_HEADER_READ_TIMEOUT | 10s | time a client has to send the request head (granian `http1_header_read_timeout`) |
| LF_MAX_HEADER_BYTES | 64Ki | total size of the request headers (names + values); above it: 431 |
| LF_DRAIN_DELAY | 0 | after SIGTERM, keep serving this long with /readyz at 503 before closing the listener |
| LF_DRAIN_TIMEOUT | 65s | after the listener is closed, how long in-flight calls may take before workers are killed |
| LF_DEFAULT_TIMEOUT | 60s | sync timeout of a function whose route entry carries none |
| LF_DEFAULT_MAX_REQUEST_BYTES | 6Mi | request body limit of a function whose route entry carries none |
| LF_DEFAULT_MAX_RESPONSE_BYTES | 6Mi | response body limit of a function whose route entry carries none |
| LF_LOG_LEVEL | info | debug, info, warning, error |
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from lf_dataplane.specs import ManifestError, parse_duration, parse_quantity

_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    nats_url: str = "nats://127.0.0.1:4222"
    workers: int = 1
    header_read_timeout_s: float = 10.0
    max_header_bytes: int = 64 * 1024
    drain_delay_s: float = 0.0
    drain_timeout_s: float = 65.0
    default_timeout_s: float = 60.0
    default_max_request_bytes: int = 6 * 1024 * 1024
    default_max_response_bytes: int = 6 * 1024 * 1024
    log_level: str = "info"

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
            header_read_timeout_s=_duration(env, "LF_HEADER_READ_TIMEOUT", d.header_read_timeout_s),
            max_header_bytes=_size(env, "LF_MAX_HEADER_BYTES", d.max_header_bytes),
            drain_delay_s=_duration(env, "LF_DRAIN_DELAY", d.drain_delay_s, allow_zero=True),
            drain_timeout_s=_duration(env, "LF_DRAIN_TIMEOUT", d.drain_timeout_s),
            default_timeout_s=_duration(env, "LF_DEFAULT_TIMEOUT", d.default_timeout_s),
            default_max_request_bytes=_size(env, "LF_DEFAULT_MAX_REQUEST_BYTES", d.default_max_request_bytes),
            default_max_response_bytes=_size(env, "LF_DEFAULT_MAX_RESPONSE_BYTES", d.default_max_response_bytes),
            log_level=_choice(env, "LF_LOG_LEVEL", d.log_level, _LOG_LEVELS),
        )

    @property
    def nats_servers(self) -> list[str]:
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]

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
