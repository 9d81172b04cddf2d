"""`lf logs NAME [-f] [--call ID]`: what a function printed, per call, from the JetStream stream LF_LOGS.

Each message on `lf.logs.{namespace}.{function}` holds one call's stdout/stderr lines (lf_runtime.capture). We
read them with an ordered push consumer (ephemeral, no server-side state left behind): from the start of the
stream (or the last `--tail` messages), stopping once caught up unless `-f` follows new ones.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

import nats
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

LOGS_STREAM = "LF_LOGS"


def format_record(record: dict[str, Any]) -> list[str]:
    """Human-readable lines: time, call id, stream, text."""
    ts = datetime.fromtimestamp(float(record.get("ts", 0)), UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    call_id = record.get("call_id", "")
    out = [f"{ts} {call_id} {line.get('stream', 'stdout'):6} {line.get('text', '')}" for line in record["lines"]]
    if record.get("dropped_bytes"):
        out.append(f"{ts} {call_id} (output over the per-call limit: {record['dropped_bytes']} bytes dropped)")
    return out


async def read_logs(
    nats_url: str,
    namespace: str,
    function: str,
    *,
    follow: bool = False,
    call_id: str | None = None,
    emit: Callable[[str], None] | None = None,
    idle_s: float = 3.0,
) -> int:
    """Print the function's logs; return how many calls' records were shown."""
    out: TextIO = sys.stdout
    write = emit or (lambda line: (out.write(line + "\n"), out.flush()))
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=2 if not follow else -1)
    shown = 0
    try:
        js = nc.jetstream()
        subject = f"lf.logs.{namespace}.{function}"
        try:  # the newest message of this function when we start: without -f we stop there
            last_seq = (await js.get_last_msg(LOGS_STREAM, subject)).seq or 0
        except NotFoundError:  # no such stream, or nothing from this function yet
            last_seq = 0
        if last_seq == 0 and not follow:
            return 0
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def on_msg(msg: Any) -> None:
            await queue.put(msg)

        sub = await js.subscribe(subject, cb=on_msg, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
        try:
            while True:
                try:
                    msg = await asyncio.wait_for(queue.get(), timeout=None if follow else idle_s)
                except TimeoutError:
                    break  # nothing more arrived
                try:
                    record = json.loads(msg.data)
                except ValueError:
                    continue
                if call_id is None or record.get("call_id") == call_id:
                    for line in format_record(record):
                        write(line)
                    shown += 1
                if not follow and msg.metadata.sequence.stream >= last_seq:
                    break  # caught up with what the stream held when we started
        finally:
            await sub.unsubscribe()
    finally:
        await nc.close()
    return shown
