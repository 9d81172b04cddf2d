"""A bench responder: answers every function of namespace `bench` through one wildcard queue subscription, so
1,000 routes need a few processes, not 1,000 (issue 3). It answers like a runtime whose handler returns "ok".

    python -m bench.responder NATS_URL
"""

from __future__ import annotations

import asyncio
import signal
import sys

import nats
import uvloop
from lf_native import decode_request, encode_response
from nats.aio.msg import Msg

HEADERS = [("content-type", "text/plain")]


async def serve(url: str) -> None:
    nc = await nats.connect(url)
    publish = nc.publish

    async def on_msg(msg: Msg) -> None:
        request = decode_request(msg.data)
        await publish(msg.reply, encode_response(200, HEADERS, b"ok", request.call_id))

    await nc.subscribe("lf.invoke.bench.*", queue="bench", cb=on_msg)
    await nc.flush()
    await nc.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await nc.drain()


if __name__ == "__main__":
    uvloop.run(serve(sys.argv[1]))
