"""The trivial handler every chain in the bench serves (DESIGN §7)."""


async def handle(req):
    return b"Hello, world!\n"
