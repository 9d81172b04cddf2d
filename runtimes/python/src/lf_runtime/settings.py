"""The runtime's configuration, read once at start-up from a mapping of environment variables.

`Settings.from_env(os.environ)` is the only place that reads the environment; tests pass plain dicts. Every bad
value raises `SettingsError` naming the variable, and `__main__` turns that into exit code 2. The handler's
folder and module are checked later, when the handler is loaded (see `handlers.py`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from lf_core.contract.names import DEFAULT_NAMESPACE, InvalidName, check_name
from lf_core.envsettings import EnvReader

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_HANDLER = "handler.handle"
DEFAULT_CONCURRENCY = 16
DEFAULT_MAX_RESPONSE_BYTES = 6 * 1024 * 1024  # docs/architecture.md, "Limits"
DEFAULT_STUCK_LIMIT = 3
DEFAULT_DRAIN_TIMEOUT_S = 30.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
MAX_CONCURRENCY = 10_000  # the Function spec's upper bound

_NATS_SCHEMES = frozenset({"nats", "tls", "ws", "wss"})
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SettingsError(ValueError):
    """An environment variable is missing or holds a bad value. The message names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a replica needs to know; one replica serves one function."""

    function: str
    namespace: str = DEFAULT_NAMESPACE
    nats_url: str = DEFAULT_NATS_URL
    handler_module: str = "handler"
    handler_name: str = "handle"
    function_dir: Path = Path(".")
    concurrency: int = DEFAULT_CONCURRENCY
    queue_depth: int = DEFAULT_CONCURRENCY
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    stuck_limit: int = DEFAULT_STUCK_LIMIT
    drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S
    secrets_dir: Path | None = None
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    metrics_port: int = 0
    """LF_METRICS_PORT: serve `GET /metrics` on this port (0: no listener)."""
    metrics_host: str = "127.0.0.1"
    health_port: int = 0
    """LF_HEALTH_PORT: serve `GET /readyz` on this port (0: no listener; lf_runtime.health)."""
    health_host: str = "127.0.0.1"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Parse and validate the `LF_*` variables of `env`.

        Args:
            env: the environment, usually `os.environ`; variables set to "" count as unset.

        Returns:
            The settings, with defaults for what is unset.

        Raises:
            SettingsError: a variable is missing or malformed; the message names it.
        """
        get = _Reader(env)
        concurrency = get.integer("LF_CONCURRENCY", DEFAULT_CONCURRENCY, low=1, high=MAX_CONCURRENCY)
        module, name = parse_handler(get.text("LF_HANDLER", DEFAULT_HANDLER))
        secrets = get.text("LF_SECRETS_DIR", "")
        return cls(
            function=get.name("LF_FUNCTION", None, "function name"),
            namespace=get.name("LF_NAMESPACE", DEFAULT_NAMESPACE, "namespace"),
            nats_url=parse_nats_url(get.text("LF_NATS_URL", DEFAULT_NATS_URL)),
            handler_module=module,
            handler_name=name,
            function_dir=Path(get.text("LF_FUNCTION_DIR", "") or os.getcwd()),
            concurrency=concurrency,
            queue_depth=get.integer("LF_QUEUE_DEPTH", concurrency, low=0, high=1_000_000),
            max_response_bytes=get.integer("LF_MAX_RESPONSE_BYTES", DEFAULT_MAX_RESPONSE_BYTES, low=0),
            stuck_limit=get.integer("LF_STUCK_LIMIT", DEFAULT_STUCK_LIMIT, low=1, high=MAX_CONCURRENCY),
            drain_timeout_s=get.plain_seconds("LF_DRAIN_TIMEOUT", DEFAULT_DRAIN_TIMEOUT_S),
            secrets_dir=Path(secrets) if secrets else None,
            connect_timeout_s=get.plain_seconds("LF_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT_S),
            metrics_port=get.integer("LF_METRICS_PORT", 0, low=0, high=65535),
            metrics_host=get.text("LF_METRICS_HOST", "127.0.0.1"),
            health_port=get.integer("LF_HEALTH_PORT", 0, low=0, high=65535),
            health_host=get.text("LF_HEALTH_HOST", "127.0.0.1"),
        )._checked()

    def _checked(self) -> Settings:
        if self.health_port and self.health_port == self.metrics_port:
            raise SettingsError(
                f"LF_HEALTH_PORT={self.health_port} is also LF_METRICS_PORT: the two listeners need their own ports"
            )
        return self

    @property
    def handler(self) -> str:
        return f"{self.handler_module}.{self.handler_name}"


def parse_handler(value: str) -> tuple[str, str]:
    """Split `module.function` or `module:function` (module may be dotted) into its two parts."""
    module, sep, name = value.rpartition(":") if ":" in value else value.rpartition(".")
    if not sep or not _DOTTED.fullmatch(module) or not _IDENTIFIER.fullmatch(name):
        raise SettingsError(
            f"LF_HANDLER={value!r} is not 'module.function' or 'module:function' (e.g. 'handler.handle')"
        )
    return module, name


def redacted_nats_url(value: str) -> str:
    """The server list without user names, passwords or tokens, for logs and messages."""
    servers = []
    for server in value.split(","):
        parts = urlsplit(server.strip())
        port = f":{parts.port}" if parts.port else ""
        servers.append(f"{parts.scheme}://{parts.hostname}{port}")
    return ",".join(servers)


def parse_nats_url(value: str) -> str:
    """Check a comma-separated list of NATS server URLs; return it unchanged."""
    for server in value.split(","):
        parts = urlsplit(server.strip())
        if parts.scheme not in _NATS_SCHEMES or not parts.hostname:
            raise SettingsError(
                f"LF_NATS_URL={value!r}: {server.strip()!r} is not a nats://, tls://, ws:// or wss:// URL"
            )
    return value


class _Reader(EnvReader):
    """The shared reader (`lf_core.envsettings`: text, integers) plus function names, and seconds as the runtimes
    take them (a plain number, an optional `s`: '30', '2.5s'), each failure naming its variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__(env, SettingsError)

    def name(self, key: str, default: str | None, what: str) -> str:
        value = self.text(key, default or "")
        if not value:
            raise SettingsError(f"{key} is required: the {what} this replica serves")
        try:
            return check_name(value, what)
        except InvalidName as exc:
            raise SettingsError(f"{key}: {exc}") from None

    def plain_seconds(self, key: str, default: float) -> float:
        raw = self.text(key, "")
        if not raw:
            return default
        try:
            value = float(raw.removesuffix("s"))
        except ValueError:
            raise SettingsError(f"{key}={raw!r} is not a number of seconds (e.g. '30' or '2.5s')") from None
        if not 0 <= value < float("inf"):
            raise SettingsError(f"{key}={raw!r} must be zero or a positive number of seconds")
        return value
