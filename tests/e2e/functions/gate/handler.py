"""gate: a test function whose calls the test can hold and release.

GET ?hold=ID writes GATE_DIR/started-ID, then waits until GATE_DIR/release exists; the test thereby knows a call
is in flight without guessing at timing. GET without hold reports the secret and env it was given.
"""

import asyncio
import os
from pathlib import Path

from lf_runtime import Request, secret


async def handle(req: Request) -> dict[str, object]:
    hold = req.query_params.get("hold")
    if hold is None:
        return {"secret": secret("gate-token"), "pid": os.getpid()}
    gate = Path(req.query_params["dir"])
    (gate / f"started-{hold}").touch()
    while not (gate / "release").exists():
        await asyncio.sleep(0.01)
    return {"released": hold}
