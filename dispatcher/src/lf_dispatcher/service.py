"""The dispatcher as one object: its connections, the functions it pulls for, the calls it runs, its callbacks and
its admin listener, started and stopped in order (`__main__` runs it until SIGTERM).

Stopping: pull no more (open pulls expire on their own; what they still deliver is handed back with a NAK), wait
up to the drain timeout for the calls in hand to be recorded and acked, give the callbacks what is left of it,
then disconnect. A call still running when the time is up is redelivered to another dispatcher after its ack wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping

import nats
from lf_core.bus.requester import NatsRequester
from lf_core.callbackkeys import KeyRing
from nats.aio.client import Client as NatsClient

from lf_dispatcher.callbacks import Callbacks, CallbackSettings
from lf_dispatcher.calls import CallRunner
from lf_dispatcher.functions import Functions, ensure_streams, watch_routes
from lf_dispatcher.metrics import AdminListener, Metrics
from lf_dispatcher.pulling import Capacity
from lf_dispatcher.settings import Settings

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, settings: Settings, env: Mapping[str, str] = os.environ) -> None:
        self.settings = settings
        self.conn = NatsRequester(settings.servers, name=f"lf-dispatcher {settings.worker_id}")
        self.nc: NatsClient | None = None
        self.capacity = Capacity(settings.max_inflight)
        self.metrics = Metrics(inflight=lambda: self.capacity.used)
        callback_settings = CallbackSettings.from_env(env)
        self.callbacks = Callbacks(self.conn.request_headers, KeyRing(callback_settings.keys_dir), callback_settings)
        self.runner = CallRunner(self.conn, worker_id=settings.worker_id, callbacks=self.callbacks)
        self.functions = Functions(
            self.conn, self.runner, self.metrics, capacity=self.capacity, ack_grace_s=settings.ack_grace_s,
            default_concurrency=settings.default_concurrency,
        )  # fmt: skip
        self.admin: AdminListener | None = None
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Connect, create the streams if needed, start pulling for every function LF_ROUTES holds."""
        settings = self.settings
        if settings.admin_port:
            self.admin = AdminListener(settings.admin_host, settings.admin_port, self.metrics)
            self.admin.start()
        await self.conn.connect()
        self.nc = await nats.connect(
            settings.servers, name=f"lf-dispatcher-routes {settings.worker_id}", max_reconnect_attempts=-1
        )
        await ensure_streams(self.conn, replicas=settings.stream_replicas)
        self.tasks.append(asyncio.create_task(watch_routes(self.nc, self.functions, replicas=settings.stream_replicas)))
        self.tasks.append(asyncio.create_task(self.functions.tick_forever()))
        log.info("ready", extra={"fields": {"worker": settings.worker_id, "max_inflight": settings.max_inflight,
                                            "admin_port": self.admin.port if self.admin else 0}})  # fmt: skip

    async def stop(self) -> None:
        """Stop pulling, let the calls in hand finish (up to the drain timeout), then disconnect."""
        started = time.monotonic()
        self.functions.stop_pulling()
        log.info("draining", extra={"fields": {"calls": len(self.runner.tasks)}})
        await self.runner.close(self.settings.drain_timeout_s)
        left = max(0.5, self.settings.drain_timeout_s - (time.monotonic() - started))
        await self.callbacks.close(left)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        await self.conn.close()
        if self.admin is not None:
            self.admin.stop()
        log.info("stopped", extra={"fields": {"unfinished": len(self.runner.tasks)}})
