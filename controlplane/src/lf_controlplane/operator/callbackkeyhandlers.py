"""kopf handlers of the callback keys (`callbackkeys`): started with the operator when LF_CALLBACK_KEYS_NAMESPACE
is set (the chart sets it), registered by importing this module (operator/handlers.py does)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import kopf

from lf_controlplane.operator.callbackkeys import KEYS_SECRET, CallbackKeys, Settings
from lf_controlplane.operator.kube import Kube
from lf_controlplane.operator.specs import GROUP, VERSION

log = logging.getLogger("lf_controlplane.operator.callbackkeys")

_MEMO = "lf-callback-keys"


@dataclass
class _Running:
    keys: CallbackKeys
    task: asyncio.Task[None]


@kopf.on.startup()
async def start_callback_keys(memo: kopf.Memo, **_: Any) -> None:
    settings = Settings.from_env()
    if settings.namespace is None:
        log.info("callback keys: off (LF_CALLBACK_KEYS_NAMESPACE is not set)")
        return
    keys = CallbackKeys(Kube.connect(), settings.namespace)
    memo[_MEMO] = _Running(keys, asyncio.create_task(keys.watch(), name="callback-keys-watch"))
    log.info("callback keys: kept in Secret %s/%s", settings.namespace, KEYS_SECRET)


@kopf.on.cleanup()
async def stop_callback_keys(memo: kopf.Memo, **_: Any) -> None:
    running = memo.get(_MEMO)
    if isinstance(running, _Running):
        running.task.cancel()
        await asyncio.gather(running.task, return_exceptions=True)
        await running.keys.kube.close()


@kopf.on.event(GROUP, VERSION, "functions")
async def function_event(event: kopf.RawEvent, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    running = memo.get(_MEMO)
    if not isinstance(running, _Running) or not namespace or event.get("type") == "DELETED":
        return
    await running.keys.function_seen(namespace)
