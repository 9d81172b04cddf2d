"""The trivial handler every chain in the bench serves (docs/performance.md)."""


async def handle(req):
    return b"Hello, world!\n"
