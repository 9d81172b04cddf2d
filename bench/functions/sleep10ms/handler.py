"""A 10 ms handler (I/O-bound work), for the high-concurrency scenario."""

import asyncio


async def handle(req):
    await asyncio.sleep(0.01)
    return b"done\n"
