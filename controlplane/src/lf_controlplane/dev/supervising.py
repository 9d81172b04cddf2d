"""Child processes kept alive by `lf dev`: started, their output relayed, restarted with backoff, stopped cleanly.

A process that exits on its own is restarted after a delay that doubles with each quick failure (0.2 s up to
10 s) and resets once it has stayed up for a while. A process we stop on purpose gets SIGTERM (it drains), then
SIGKILL after a grace period.

Output is read in chunks and split into lines here (`read_lines`), not with `StreamReader.readline()`, whose
64 KiB limit raised on one long line and ended the relay (and with it the supervision) of that process. A line
longer than MAX_LINE_BYTES is truncated, not split: its first MAX_LINE_BYTES are shown with a marker saying how
many bytes were left out (a 1 MiB JSON line split into sixteen pieces reads no better, and floods the terminal).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Backoff:
    first: float = 0.2
    cap: float = 10.0
    healthy_after: float = 10.0

    def delay(self, quick_failures: int) -> float:
        """Seconds to wait before restart number `quick_failures` (0-based) of a process that keeps failing."""
        return float(min(self.first * (2 ** max(quick_failures, 0)), self.cap))


class State(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPED = "stopped"


@dataclass(frozen=True)
class ProcessSpec:
    label: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    # A line the process prints once it serves (the runtimes log `"event":"ready"`); None: ready once started.
    ready_marker: str | None = None


Printer = Callable[[str, str], None]

MAX_LINE_BYTES = 64 * 1024
"""Longest output line relayed whole; a longer one is cut here and marked (`read_lines`)."""
_CHUNK = 64 * 1024


async def read_lines(stream: asyncio.StreamReader, limit: int = MAX_LINE_BYTES) -> AsyncIterator[str]:
    """The lines of `stream` (without their newline) until EOF, each at most `limit` bytes of it: a longer line
    ends with ` [... N more bytes not shown]`. Holds at most `limit` bytes plus one chunk, however long the line."""
    pending = bytearray()
    dropped = 0
    while chunk := await stream.read(_CHUNK):
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            dropped += _keep(pending, chunk, start, end, limit)
            yield _line(pending, dropped)
            pending.clear()
            dropped = 0
            start = end + 1
        dropped += _keep(pending, chunk, start, len(chunk), limit)
    if pending or dropped:
        yield _line(pending, dropped)


def _keep(pending: bytearray, chunk: bytes, start: int, end: int, limit: int) -> int:
    """Append chunk[start:end] to `pending` up to `limit` bytes in all; the number of bytes left out."""
    room = max(limit - len(pending), 0)
    size = end - start
    pending += chunk[start : start + min(size, room)]
    return max(size - room, 0)


def _line(raw: bytearray, dropped: int) -> str:
    text = raw.decode(errors="replace").rstrip("\r")
    return f"{text} [... {dropped} more bytes not shown]" if dropped else text


def print_line(label: str, line: str) -> None:
    """Relay one line of a child's output; a JSON log line is shown human-readably (`human`)."""
    text = "\n".join(f"{label:>18} | {part}" for part in human(line).split("\n"))
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


_MULTILINE = ("traceback",)


def human(line: str) -> str:
    """`HH:MM:SS level event key=value ...` for a JSON log line (ours: `ts`, `level`, `event`); else `line` as is.

    A string value with spaces, quotes or `=` is quoted; a traceback follows on its own lines.
    """
    if not line.startswith("{"):
        return line
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict) or "event" not in record:
        return line
    ts = str(record.pop("ts", ""))
    clock = ts[11:19] if len(ts) >= 19 and ts[10] == "T" else time.strftime("%H:%M:%S")
    parts = [clock, str(record.pop("level", "info")), str(record.pop("event"))]
    extra: list[str] = []
    for key, value in record.items():
        if key in _MULTILINE and isinstance(value, str) and value:
            extra.append(value.rstrip("\n"))
            continue
        if isinstance(value, str):
            shown = value if value and not any(c in value for c in ' "=\n\t') else json.dumps(value)
        else:
            shown = json.dumps(value, separators=(",", ":"))
        parts.append(f"{key}={shown}")
    return "\n".join([" ".join(parts), *extra])


@dataclass
class Supervised:
    """One child process, kept running until `stop()`."""

    spec: ProcessSpec
    printer: Printer = print_line
    backoff: Backoff = field(default_factory=Backoff)
    on_change: Callable[[], None] = lambda: None
    state: State = field(default=State.STOPPED, init=False)
    restarts: int = field(default=0, init=False)
    last_exit: int | None = field(default=None, init=False)
    process: asyncio.subprocess.Process | None = field(default=None, init=False)
    ready: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    failed_unready: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _stopping: bool = field(default=False, init=False)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._keep_running(), name=f"supervise {self.spec.label}")

    async def _keep_running(self) -> None:
        quick_failures = 0
        while not self._stopping:
            started = time.monotonic()
            self._set(State.STARTING)
            self.process = await asyncio.create_subprocess_exec(
                *self.spec.argv,
                env=self.spec.env,
                cwd=self.spec.cwd,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
            if self.spec.ready_marker is None:
                self._mark_ready()
            await self._relay_output(self.process)
            self.last_exit = await self.process.wait()
            if not self.ready.is_set():
                self.failed_unready.set()
            self.ready.clear()
            if self._stopping:
                break
            quick_failures = 0 if time.monotonic() - started > self.backoff.healthy_after else quick_failures + 1
            delay = self.backoff.delay(quick_failures - 1)
            self.printer(self.spec.label, f"exited with {self.last_exit}; restarting in {delay:.1f} s")
            self.restarts += 1
            self._set(State.BACKOFF)
            await asyncio.sleep(delay)
        self._set(State.STOPPED)

    async def _relay_output(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        marker = self.spec.ready_marker
        async for text in read_lines(process.stdout):
            self.printer(self.spec.label, text)
            if marker is not None and not self.ready.is_set() and marker in text:
                self._mark_ready()

    def _mark_ready(self) -> None:
        self.ready.set()
        self._set(State.RUNNING)

    async def wait_ready(self, timeout: float) -> bool:
        """True once the process serves; False if it exited before serving or did not serve within `timeout`."""
        waiters = [asyncio.create_task(self.ready.wait()), asyncio.create_task(self.failed_unready.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return self.ready.is_set()

    async def stop(self, grace: float = 30.0) -> None:
        """SIGTERM, wait up to `grace` seconds for the child to drain and exit, then SIGKILL."""
        self._stopping = True
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._set(State.STOPPED)

    def _set(self, state: State) -> None:
        self.state = state
        self.on_change()
