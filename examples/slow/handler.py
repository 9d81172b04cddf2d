"""slow: sleeps ?seconds=N (default 1). Past the 2 s timeout the caller gets 504 from the runtime."""

import asyncio

from lf_runtime import Request


async def handle(req: Request) -> dict[str, float]:
    seconds = float(req.query_params.get("seconds", "1"))
    await asyncio.sleep(seconds)
    return {"slept": seconds}
