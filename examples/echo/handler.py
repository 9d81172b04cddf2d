"""echo: JSON in, JSON out. Shows what a handler receives: method, path, query, headers and body."""

from lf_runtime import Request, Response


async def handle(req: Request) -> Response | dict[str, object]:
    if req.body and "json" not in (req.headers.get("content-type") or ""):
        return Response.json({"error": "send JSON (Content-Type: application/json)"}, status=415)
    return {
        "method": req.method,
        "path": req.path,
        "query": req.query_string,
        "json": req.json() if req.body else None,
        "user_agent": req.headers.get("user-agent"),
    }
