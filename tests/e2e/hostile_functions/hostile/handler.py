"""hostile: a function with a strict contract, for tests/e2e/test_hostile.py.

POST a JSON object {"n": <int>} -> {"double": 2n}; anything else -> 400 or 415 from the function itself.
GET ?sleep=MS sleeps that long (the overload test), then answers "ok".
"""

import asyncio
import json

from lf_runtime import Request, Response


async def handle(req: Request) -> Response | dict[str, object] | str:
    if req.method == "GET":
        await asyncio.sleep(int(req.query_params.get("sleep", "0") or 0) / 1000)
        return "ok"
    if "json" not in (req.headers.get("content-type") or ""):
        return Response.json({"error": "send application/json"}, status=415)
    try:
        doc = json.loads(req.body)
        n = doc["n"]
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError("n must be an integer")
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        return Response.json({"error": str(exc)}, status=400)
    return {"double": 2 * n}
