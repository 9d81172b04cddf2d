"""The bounded JetStream stream LF_LOGS: a function's stdout/stderr, one message per call that printed.

Runtimes publish on `lf.logs.{namespace}.{function}` (plain NATS publishes, no acks: logs must never slow or fail
a call); the stream keeps them within LF_LOGS_MAX_BYTES and LF_LOGS_MAX_AGE, dropping the oldest. Every ingestor
creates it at start (idempotent: an existing stream's limits are updated). `lf logs` and the portal read it.
"""

from __future__ import annotations

import logging

from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext

log = logging.getLogger(__name__)

LOGS_STREAM = "LF_LOGS"
LOGS_SUBJECTS = "lf.logs.>"
MAX_MESSAGE_BYTES = 256 * 1024


def logs_subject(namespace: str, function: str) -> str:
    return f"lf.logs.{namespace}.{function}"


def stream_config(max_bytes: int, max_age_s: float, replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=LOGS_STREAM,
        subjects=[LOGS_SUBJECTS],
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        storage=StorageType.FILE,
        max_bytes=max_bytes,
        max_age=max_age_s,
        max_msg_size=MAX_MESSAGE_BYTES,
        num_replicas=replicas,
    )


async def ensure_logs_stream(js: JetStreamContext, max_bytes: int, max_age_s: float, replicas: int = 1) -> None:
    """Create LF_LOGS (with `replicas`), or bring an existing one's limits to these."""
    config = stream_config(max_bytes, max_age_s, replicas)
    try:
        await js.add_stream(config)
    except Exception as exc:  # exists with other limits: update it
        log.debug("LF_LOGS exists; updating", extra={"fields": {"reason": repr(exc)}})
        await js.update_stream(config)
