"""Issue 14, item 9: one output line over 64 KiB used to end `lf dev`'s relay of a child's output
(`StreamReader.readline()` raised), after which the child blocked on a full pipe. Lines are now cut at
MAX_LINE_BYTES with a marker, and the relay (and the supervision) go on."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from lf_controlplane.dev.supervising import MAX_LINE_BYTES, ProcessSpec, State, Supervised, read_lines

CHILD = """
import sys, time
sys.stdout.write("x" * (1024 * 1024) + "\\n")
sys.stdout.write("after the long line\\n")
sys.stdout.flush()
time.sleep(60)
"""


async def test_a_1_mib_line_is_cut_and_the_child_stays_supervised(tmp_path: Path) -> None:
    seen: list[str] = []
    spec = ProcessSpec(label="child", argv=[sys.executable, "-c", CHILD], env={}, cwd=tmp_path)
    child = Supervised(spec=spec, printer=lambda _label, line: seen.append(line))
    child.start()
    try:
        async with asyncio.timeout(20):
            while "after the long line" not in seen:
                await asyncio.sleep(0.02)
        long = seen[seen.index("after the long line") - 1]
        dropped = 1024 * 1024 - MAX_LINE_BYTES
        assert long == "x" * MAX_LINE_BYTES + f" [... {dropped} more bytes not shown]"
        assert child.state == State.RUNNING and child.restarts == 0
        assert child.process is not None and child.process.returncode is None
    finally:
        await child.stop(grace=5)


async def test_lines_split_across_reads_and_a_last_line_without_newline() -> None:
    stream = asyncio.StreamReader()
    for piece in (b"one\ntw", b"o\r\n", b"y" * 10, b"y" * 10 + b"\nlast"):
        stream.feed_data(piece)
    stream.feed_eof()
    lines = [line async for line in read_lines(stream, limit=8)]
    assert lines == ["one", "two", "y" * 8 + " [... 12 more bytes not shown]", "last"]
