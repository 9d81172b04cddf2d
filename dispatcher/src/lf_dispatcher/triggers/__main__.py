"""`python -m lf_dispatcher.triggers`: the trigger service alone (the dispatcher runs it too; tests run it alone)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from lf_core import jsonlogs

from lf_dispatcher.triggers.service import serve_triggers
from lf_dispatcher.triggers.settings import TriggerSettingsError


async def _main() -> None:
    task = asyncio.ensure_future(serve_triggers())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main() -> int:
    jsonlogs.configure("info", ("lf_dispatcher", "lf_core"))
    try:
        asyncio.run(_main())
    except TriggerSettingsError as exc:
        print(f"lf-dispatcher triggers: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
