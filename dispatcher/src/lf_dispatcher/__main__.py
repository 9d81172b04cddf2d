"""`python -m lf_dispatcher` (script `lf-dispatcher`; `lf dispatcher`, and `lf dev` starts one): run until SIGTERM or
SIGINT, then drain (`service.Dispatcher.stop`). Exit codes: 0 after a clean stop, 1 when NATS refuses the
credentials, 2 for a bad `LF_*` variable (the message names it)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys

import uvloop
from lf_core import jsonlogs
from lf_core.bus.errors import AuthorizationError

from lf_dispatcher.callbacks import CallbackSettings, CallbackSettingsError
from lf_dispatcher.service import Dispatcher
from lf_dispatcher.settings import Settings, SettingsError
from lf_dispatcher.triggers import serve_triggers
from lf_dispatcher.triggers.settings import TriggerSettings, TriggerSettingsError

EX_NATS = 1
EX_CONFIG = 2
log = logging.getLogger("lf_dispatcher")
LOGGERS = ("lf_dispatcher", "lf_core")
"""Ours, as JSON lines on stderr (`lf_core.jsonlogs`); the NATS client's at warnings."""


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    dispatcher = Dispatcher(settings)
    await dispatcher.start()
    dispatcher.tasks.append(asyncio.create_task(serve_triggers(os.environ)))  # cron and NATS Triggers
    await stop.wait()
    await dispatcher.stop()


def main() -> None:
    try:  # every setting checked here, before anything starts: a bad one is exit 2, not a part left unstarted
        settings = Settings.from_env(os.environ)
        CallbackSettings.from_env(os.environ)
        TriggerSettings.from_env(os.environ)
    except (SettingsError, CallbackSettingsError, TriggerSettingsError) as exc:
        jsonlogs.configure("info", LOGGERS)
        log.error("bad_settings", extra={"fields": {"error": str(exc)}})
        sys.exit(EX_CONFIG)
    jsonlogs.configure(settings.log_level, LOGGERS)
    # A call allocates a few hundred short-lived objects (envelopes, records, futures, tasks): with the default
    # gen-0 threshold (700) the collector ran every few calls and cost ~20% of the dispatcher's CPU while draining
    # a backlog (80-128 -> 66-92 µs per call). The objects of the imports are frozen out of every collection.
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    try:
        uvloop.run(serve(settings))
    except AuthorizationError as exc:
        log.error("nats_refused_the_credentials", extra={"fields": {"error": str(exc)}})
        sys.exit(EX_NATS)


if __name__ == "__main__":
    main()
