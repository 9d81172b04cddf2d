"""The replica's connection over nats-py, for what the lean `lf_core.bus.link` does not speak: `tls://`,
`ws://` and `wss://` servers. Imported only then (nats-py costs a replica ~120 ms of start-up and several MiB).

It adapts nats-py to `connecting.Connection`: a sync `callback(reply, payload)` behind nats-py's async message
callback, a task per publish, and nats-py's private `_send_unsubscribe` for `drain` (nats-py has no "stop the
server sending, then tell me when everything it sent is here").
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import nats
from lf_core.bus.link import MessageCallback, Report
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription


class NatsPyConnection:
    """`connecting.Connection` over a nats-py client that reconnects for ever once connected."""

    def __init__(self, servers: list[str], *, name: str, report: Report) -> None:
        self._servers = servers
        self._name = name
        self._report = report
        self._nc: Client | None = None
        self._subs: dict[int, Subscription] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    @property
    def max_payload(self) -> int:
        return self._nc.max_payload if self._nc is not None else 0

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def connect(self) -> None:
        self._nc = await nats.connect(
            servers=self._servers, name=self._name, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
            error_cb=self._on_error, disconnected_cb=self._on_disconnected, reconnected_cb=self._on_reconnected,
        )  # fmt: skip

    def subscribe(self, subject: str, callback: MessageCallback, queue: str = "") -> int:
        async def on_msg(msg: Msg) -> None:
            callback(msg.reply or None, msg.data)

        task = asyncio.get_running_loop().create_task(self._client.subscribe(subject, queue=queue, cb=on_msg))
        sid = len(self._subs) + 1
        task.add_done_callback(lambda done: self._subs.__setitem__(sid, done.result()))
        self._keep(task)
        return sid

    def publish(self, subject: str, payload: bytes) -> bool:
        if not self._client.is_connected:
            return False
        self._keep(asyncio.get_running_loop().create_task(self._publish(subject, payload)))
        return True

    async def _publish(self, subject: str, payload: bytes) -> None:
        try:
            await self._client.publish(subject, payload)
        except Exception as exc:  # closed or reconnecting with a full buffer: the caller times out
            self._report(logging.WARNING, "reply_failed", {"error": repr(exc)})

    async def flush(self, timeout: float | None = None) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # nats-py writes a flush's PING ahead of commands still in its pending buffer; the second PING leaves
        # after the flusher wrote that buffer (one start in 30 answered "no responders" right after "ready").
        seconds = max(1, round(timeout or 10))  # nats-py takes whole seconds
        await self._client.flush(timeout=seconds)
        await self._client.flush(timeout=seconds)

    async def drain(self, sid: int, timeout: float | None = None) -> None:
        sub = self._subs.pop(sid)
        await self._client._send_unsubscribe(sub._id)  # the server stops sending; nothing is dropped locally
        await self.flush(timeout)  # every message the server sent before the UNSUB is read and queued
        await sub.drain()  # type: ignore[no-untyped-call]  # hands the queued messages to the callback

    async def close(self) -> None:
        if self._nc is None:
            return
        self._closing = True
        try:
            await self.flush(2)
        except Exception as exc:
            self._report(logging.WARNING, "flush_failed", {"error": repr(exc)})
        await self._nc.close()

    @property
    def _client(self) -> Client:
        if self._nc is None:
            raise RuntimeError("not connected to NATS")
        return self._nc

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_error(self, exc: Exception) -> None:
        self._report(logging.WARNING, "nats_error", {"error": repr(exc)})

    async def _on_disconnected(self) -> None:
        if not self._closing:
            self._report(logging.WARNING, "nats_disconnected", {})

    async def _on_reconnected(self) -> None:
        self._report(logging.INFO, "nats_reconnected", {})
