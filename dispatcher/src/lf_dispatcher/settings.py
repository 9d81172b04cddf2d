"""The dispatcher's environment (`LF_*`), parsed and checked once at start; a bad value names its variable.

| variable | default | what |
|---|---|---|
| `LF_NATS_URL` | `nats://127.0.0.1:4222` | the broker (comma-separated servers, `user:password@` or `token@` allowed) |
| `LF_STREAM_REPLICAS` | 1 | replicas of the async streams and buckets when this process creates them |
| `LF_ASYNC_ACK_GRACE` | 5s | added to a function's timeout for its consumer's ack wait |
| `LF_DISPATCHER_MAX_INFLIGHT` | 1000 | async calls this dispatcher holds at once, all functions (pulled, not acked) |
| `LF_DISPATCHER_DEFAULT_CONCURRENCY` | 8 | a function's per-replica concurrency when its route entry has none |
| `LF_ADMIN_HOST`, `LF_ADMIN_PORT` | 127.0.0.1, 0 | `GET /metrics` (0: no listener) |
| `LF_DRAIN_TIMEOUT` | 30s | after SIGTERM, how long the calls in hand may take to finish |
| `LF_CALLBACK_ALLOW_PRIVATE` | false | callbacks may go to private and loopback addresses (`lf dev`, tests) |
| `LF_LOG_LEVEL` | info | |
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from lf_core.asynccalls.streams import MAX_STREAM_REPLICAS
from lf_core.envsettings import EnvReader

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


class SettingsError(ValueError):
    """A variable is malformed or out of range; the message names it."""


@dataclass(frozen=True)
class Settings:
    nats_url: str = DEFAULT_NATS_URL
    stream_replicas: int = 1
    ack_grace_s: float = 5.0
    max_inflight: int = 1000
    default_concurrency: int = 8
    admin_host: str = "127.0.0.1"
    admin_port: int = 0
    drain_timeout_s: float = 30.0
    callback_allow_private: bool = False
    log_level: str = "info"
    worker_id: str = ""
    """`{host}:{pid}`: written into the records of the calls this process runs."""

    @property
    def servers(self) -> list[str]:
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Raises SettingsError naming the variable."""
        get = EnvReader(env, SettingsError)
        return cls(
            nats_url=_nats_url(get.text("LF_NATS_URL", DEFAULT_NATS_URL)),
            stream_replicas=get.integer("LF_STREAM_REPLICAS", 1, low=1, high=MAX_STREAM_REPLICAS),
            ack_grace_s=get.seconds("LF_ASYNC_ACK_GRACE", 5.0),
            max_inflight=get.integer("LF_DISPATCHER_MAX_INFLIGHT", 1000, low=1, high=1_000_000),
            default_concurrency=get.integer("LF_DISPATCHER_DEFAULT_CONCURRENCY", 8, low=1, high=100_000),
            admin_host=get.text("LF_ADMIN_HOST", "127.0.0.1"),
            admin_port=get.integer("LF_ADMIN_PORT", 0, low=0, high=65535),
            drain_timeout_s=get.seconds("LF_DRAIN_TIMEOUT", 30.0),
            callback_allow_private=get.boolean("LF_CALLBACK_ALLOW_PRIVATE", False),
            log_level=get.choice("LF_LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            worker_id=f"{socket.gethostname()}:{os.getpid()}",
        )


def _nats_url(value: str) -> str:
    for server in value.split(","):
        parts = urlsplit(server.strip() if "://" in server else f"nats://{server.strip()}")
        if parts.scheme != "nats" or not parts.hostname:
            raise SettingsError(f"LF_NATS_URL={value!r}: {server.strip()!r} is not a nats:// URL")
    return value
