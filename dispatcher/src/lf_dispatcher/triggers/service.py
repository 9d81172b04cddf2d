"""The trigger service inside the dispatcher: the LF_ROUTES watch (`table`), the cron leader (`cron`) and the NATS
subscriptions (`subjects`), on a nats-py connection of their own. `serve_triggers(env)` runs it until cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping

import nats
from lf_core.asynccalls import streams, triggered
from lf_core.bus.jetstream import nats_py_requester
from lf_core.stores.interface import Lease
from lf_core.stores.local import LocalLease, LocalLeaseBoard

from lf_dispatcher.triggers.cron import CronScheduler
from lf_dispatcher.triggers.settings import TriggerSettings
from lf_dispatcher.triggers.subjects import NatsTriggers
from lf_dispatcher.triggers.table import TriggerTable, watch

log = logging.getLogger(__name__)

LEASE_NAME = "triggers-cron"
"""The cron leader's lease (Valkey key `lf:lease:triggers-cron`)."""


def make_lease(settings: TriggerSettings) -> Lease:
    """Valkey's lease when LF_VALKEY_URL is set (several dispatchers), else an in-process one (`lf dev`)."""
    owner = f"{socket.gethostname()}:{os.getpid()}"
    if settings.valkey_url:
        from lf_valkey.stores import ValkeyLease, connect

        return ValkeyLease(connect(settings.valkey_url, timeout_s=1.0), LEASE_NAME, settings.lease_ttl_s, owner=owner)
    log.info(
        "trigger_cron_local_lease",
        extra={"fields": {"note": "one dispatcher leads cron; set LF_VALKEY_URL for several"}},
    )
    return LocalLease(LocalLeaseBoard(), LEASE_NAME, settings.lease_ttl_s, owner=owner)


RESTART_S = 1.0


async def serve_triggers(env: Mapping[str, str] | None = None) -> None:
    """Run cron and NATS Triggers until cancelled (the one call the dispatcher's main makes). A failure (the broker
    not there at start, say) is logged and the service started again a second later; a bad setting raises
    TriggerSettingsError at once."""
    settings = TriggerSettings.from_env(os.environ if env is None else env)
    while True:
        try:
            await _serve(settings)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("triggers_restarting", extra={"fields": {"error": repr(exc)}})
        await asyncio.sleep(RESTART_S)


async def _serve(settings: TriggerSettings) -> None:
    nc = await nats.connect(
        servers=settings.servers, name="lf-dispatcher-triggers", max_reconnect_attempts=-1, reconnect_time_wait=0.5
    )
    request = nats_py_requester(nc)
    tasks: list[asyncio.Task[None]] = []
    try:
        await streams.ensure_all(request, replicas=settings.stream_replicas)
        await triggered.ensure_state_bucket(request, replicas=settings.stream_replicas)
        table = TriggerTable()
        scheduler = CronScheduler(
            table,
            request,
            make_lease(settings),
            lease_ttl_s=settings.lease_ttl_s,
            publish_timeout_s=settings.publish_timeout_s,
        )
        subjects = NatsTriggers(
            nc, table, request, publish_timeout_s=settings.publish_timeout_s, ack_wait_s=settings.ack_wait_s
        )
        tasks.append(asyncio.create_task(watch(nc.jetstream(), table), name="lf-triggers-watch"))
        await table.loaded.wait()
        tasks.append(asyncio.create_task(scheduler.run(), name="lf-triggers-cron"))
        tasks.append(asyncio.create_task(subjects.run(), name="lf-triggers-nats"))
        log.info("triggers_ready", extra={"fields": {"entries": len(table.triggers)}})
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await nc.close()
