"""`lf dlq list|show|redrive|purge`: the dead letters of async calls (LF_DEAD), over nats-py; the logic is
`lf_core.asynccalls.deadletters`, which the management API will share."""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import nats
import typer
import uvloop
from lf_core.asynccalls import deadletters
from lf_core.bus import jetstream
from rich.console import Console
from rich.table import Table

from lf_controlplane.dev import state

dlq_app = typer.Typer(help="Dead letters of async calls: list, show, redrive, purge.", no_args_is_help=True)
console = Console()
T = TypeVar("T")

NatsUrl = Annotated[
    str | None, typer.Option("--nats-url", envvar="LF_NATS_URL", help="the broker (default: the running lf dev's)")
]
Function = Annotated[str | None, typer.Option("--function", "-f", help="only this function")]
Namespace = Annotated[str | None, typer.Option("--namespace", "-n", help="only this namespace")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON")]
DEFAULT_URL = "nats://127.0.0.1:4222"


def broker_url(url: str | None) -> str:
    """`url`, else the broker of the `lf dev` running with state in LF_STATE_DIR (.lf), else the local default."""
    if url:
        return url
    running = state.read(Path(os.environ.get("LF_STATE_DIR") or ".lf").resolve())
    return running.nats_url if running is not None and running.nats_url else DEFAULT_URL


def _run(url: str | None, work: Callable[[jetstream.Requester], Awaitable[T]]) -> T:
    url = broker_url(url)

    async def main() -> T:
        nc = await nats.connect(url, connect_timeout=3, max_reconnect_attempts=1)
        try:
            return await work(jetstream.nats_py_requester(nc))
        finally:
            await nc.close()

    try:
        return uvloop.run(main())
    except (LookupError, jetstream.JetStreamError, OSError, TimeoutError, nats.errors.Error) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _plain(letter: deadletters.DeadLetter) -> dict[str, Any]:
    return {f: getattr(letter, f) for f in letter.__struct_fields__}


@dlq_app.command("list")
def list_(url: NatsUrl = None, function: Function = None, namespace: Namespace = None, as_json: AsJson = False,
          limit: int = 100) -> None:  # fmt: skip
    """The oldest dead letters."""
    letters = _run(url, lambda r: deadletters.list_letters(r, namespace=namespace, function=function, limit=limit))
    if as_json:
        print(json.dumps([_plain(x) for x in letters], indent=2))
        return
    table = Table("call id", "function", "attempts", "status", "dead at", "error")
    for x in letters:
        table.add_row(x.call_id, f"{x.function}.{x.namespace}", str(x.attempts), str(x.status or "-"), _when(x.dead_at),
                      x.error[:80])  # fmt: skip
    console.print(table)


@dlq_app.command()
def show(call_id: str, url: NatsUrl = None) -> None:
    """One dead letter: error, attempts, timestamps and the request."""
    found = _run(url, lambda r: deadletters.find(r, call_id))
    if found is None:
        console.print(f"[red]error:[/red] no dead letter for call {call_id}")
        raise typer.Exit(1)
    print(json.dumps(_plain(found[0]), indent=2))


@dlq_app.command()
def redrive(call_ids: list[str], url: NatsUrl = None) -> None:
    """Run dead calls again from attempt 1 (same call id; the result replaces the dead record)."""
    for call_id in call_ids:
        letter = _run(url, lambda r, c=call_id: deadletters.redrive(r, c))  # type: ignore[misc]
        console.print(f"redriven {call_id} ({letter.function}.{letter.namespace})")


@dlq_app.command()
def purge(url: NatsUrl = None, function: Function = None, namespace: Namespace = None,
          yes: Annotated[bool, typer.Option("--yes", "-y", help="don't ask")] = False) -> None:  # fmt: skip
    """Delete dead letters (all, or of one function or namespace)."""
    scope = f"{function or '*'}.{namespace or '*'}"
    if not yes and not typer.confirm(f"delete the dead letters of {scope}?"):
        raise typer.Exit(1)
    count = _run(url, lambda r: deadletters.purge(r, namespace=namespace, function=function))
    console.print(f"purged {count} dead letters")
