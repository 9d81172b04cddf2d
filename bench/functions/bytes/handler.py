"""Echoes the request body: payload scenarios (0 B, 1 KiB, 64 KiB) carry it both ways."""


async def handle(req):
    return req.body
