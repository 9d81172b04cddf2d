"""`python -m lf_runtime` (script `lf-runtime-python`): configure from the environment, load, serve, exit.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 1 when the handler's module fails to import or NATS is
unreachable, 2 for a configuration error (a bad `LF_*` variable, a handler that doesn't exist, tracing configured
without the OpenTelemetry SDK installed), 75 when stuck sync handlers forced a restart.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Mapping

import uvloop

from lf_runtime import secrets_files, tracing
from lf_runtime.capture import CallOutput
from lf_runtime.handlers import HandlerImportError, HandlerNotFoundError, load_handler
from lf_runtime.logs import Log
from lf_runtime.serving import EX_FAILURE, EX_TEMPFAIL, Replica
from lf_runtime.settings import Settings, SettingsError, redacted_nats_url

EX_CONFIG = 2


def main() -> None:
    """Entry point of the script and of `python -m lf_runtime`."""
    code = run(os.environ)
    if code == EX_TEMPFAIL:
        # Stuck handler threads are still running; don't let interpreter shutdown wait on or trip over them.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


def run(env: Mapping[str, str]) -> int:
    """Serve until stopped and return the process exit code (see the module docstring)."""
    begun = time.perf_counter()
    try:
        settings = Settings.from_env(env)
    except SettingsError as exc:
        Log().error("bad_settings", error=str(exc))
        return EX_CONFIG
    log = Log(function=settings.function, namespace=settings.namespace)
    if tracing.ENABLED and (missing := tracing.missing_sdk()):
        log.error("bad_settings", error=missing)
        return EX_CONFIG
    log.event(
        "started",
        pid=os.getpid(),
        handler=settings.handler,
        function_dir=str(settings.function_dir),
        nats=redacted_nats_url(settings.nats_url),
        concurrency=settings.concurrency,
        queue_depth=settings.queue_depth,
    )
    secrets_files.configure(settings.secrets_dir)
    try:
        handler = load_handler(settings.function_dir, settings.handler_module, settings.handler_name)
    except HandlerNotFoundError as exc:
        log.error("handler_not_found", error=str(exc))
        return EX_CONFIG
    except HandlerImportError as exc:
        cause = exc.__cause__ or exc
        log.error("handler_import_failed", error=str(exc), traceback="".join(traceback.format_exception(cause)))
        return EX_FAILURE
    log.event("handler_loaded", handler=handler.name, is_async=handler.is_async, setup_ms=_ms_since(begun))
    try:
        capture = None
        if env.get("LF_LOG_CAPTURE", "1") != "0":  # a function's print() per call, to LF_LOGS (capture.py)
            capture = CallOutput(settings.namespace, settings.function)
            capture.install()
        return uvloop.run(Replica(settings, handler, log, capture).run())
    except Exception as exc:  # e.g. NATS unreachable at start-up
        log.error("failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        return EX_FAILURE


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


if __name__ == "__main__":
    main()
