"""cached: a fresh id on every call the function really handles; ?nostore=1 answers Cache-Control: no-store."""

import uuid

from lf_runtime import Request, Response


def handle(req: Request) -> Response:
    headers = {"content-type": "text/plain"}
    if req.query_params.get("nostore"):
        headers["cache-control"] = "no-store"
    return Response(uuid.uuid4().hex, headers=headers)
