"""The trigger service's environment, read once at start; a bad value names its variable.

| variable | default | what |
|---|---|---|
| `LF_NATS_URL` | `nats://127.0.0.1:4222` | the broker |
| `LF_VALKEY_URL` | (none) | Valkey: the cron leader's lease; unset: an in-process lease (`lf dev`: one dispatcher) |
| `LF_TRIGGER_LEASE_TTL` | 10s | how long the cron leader's lease lasts unless renewed (renewed every third of it) |
| `LF_TRIGGER_PUBLISH_TIMEOUT` | 5s | how long a triggered call's PubAck from LF_ASYNC may take |
| `LF_TRIGGER_ACK_WAIT` | 30s | JetStream Triggers: when a message a dead dispatcher held is redelivered |
| `LF_STREAM_REPLICAS` | 1 | replicas of LF_TRIGGERS (and the async streams) when this process creates them |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lf_core.asynccalls.streams import stream_replicas
from lf_core.envsettings import EnvReader


class TriggerSettingsError(ValueError):
    """A variable is malformed; the message names it."""


@dataclass(frozen=True)
class TriggerSettings:
    nats_url: str = "nats://127.0.0.1:4222"
    valkey_url: str = ""
    lease_ttl_s: float = 10.0
    publish_timeout_s: float = 5.0
    ack_wait_s: float = 30.0
    stream_replicas: int = 1

    @property
    def servers(self) -> list[str]:
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TriggerSettings:
        try:
            replicas = stream_replicas(env)
        except ValueError as exc:
            raise TriggerSettingsError(str(exc)) from None
        get = EnvReader(env, TriggerSettingsError)
        return cls(
            nats_url=get.text("LF_NATS_URL", "nats://127.0.0.1:4222"),
            valkey_url=get.text("LF_VALKEY_URL", ""),
            lease_ttl_s=get.seconds("LF_TRIGGER_LEASE_TTL", 10.0, positive=True),
            publish_timeout_s=get.seconds("LF_TRIGGER_PUBLISH_TIMEOUT", 5.0, positive=True),
            ack_wait_s=get.seconds("LF_TRIGGER_ACK_WAIT", 30.0, positive=True),
            stream_replicas=replicas,
        )
