"""The conformance function in Python: one behaviour per first path segment (see the suite's README)."""

import hashlib
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta

from lf_runtime import Request, Response


def _count_run(req: Request) -> None:
    """The async suite counts runs: a line in the file the X-Runs-Log header names."""
    log = req.headers.get("x-runs-log")
    if log:
        line = json.dumps({"call": req.call_id, "pid": os.getpid(), "t": time.time()}) + "\n"
        with open(log, "a") as f:
            f.write(line)


def _flaky(req: Request) -> Response:
    """503 the first time (it creates the file X-Flaky names), 200 after: a call the async suite sees retried."""
    try:
        open(req.headers.get("x-flaky", ""), "x").close()
    except FileExistsError:
        return Response(b"recovered", headers=[("content-type", "text/plain")])
    return Response(b"failing once", status=503, headers=[("content-type", "text/plain")])


def _event(req: Request) -> dict[str, object]:
    """The event's attributes as JSON, its time as Unix microseconds and its offset in seconds (so every
    runtime's answer compares equal), and the body's size and digest."""
    event = req.event
    fields: dict[str, object] | None = None
    if event is not None:
        stamp = event.time
        fields = {
            "specversion": event.specversion,
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "subject": event.subject,
            "time_unix_us": None if stamp is None else (stamp - _EPOCH) // timedelta(microseconds=1),
            "time_offset_s": None if stamp is None else int((stamp.utcoffset() or timedelta()).total_seconds()),
            "datacontenttype": event.datacontenttype,
            "dataschema": event.dataschema,
            "extensions": event.extensions,
        }
    return {"event": fields, "body_size": len(req.body), "body_sha256": hashlib.sha256(req.body).hexdigest()}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def handle(req: Request) -> Response | dict[str, object]:  # noqa: C901 (one branch per behaviour, by design)
    parts = req.path.strip("/").split("/")
    if parts[0] == "runs":
        _count_run(req)
        parts = parts[1:] or [""]
    action, arg = parts[0], (parts[1] if len(parts) > 1 else "")
    if action == "echo":
        headers = [("content-type", req.headers.get("content-type", "application/octet-stream"))]
        headers += [("x-echo", value) for value in req.headers.get_all("x-echo")]
        return Response(req.body, status=200, headers=headers)
    if action == "headers":
        headers = [("set-cookie", "a=1"), ("set-cookie", "b=2"), ("x-multi", "one"), ("x-multi", "two")]
        return Response(b"headers", headers=[("content-type", "text/plain"), *headers])
    if action == "status":
        return Response(f"status {arg}", status=int(arg), headers=[("content-type", "text/plain")])
    if action == "empty":
        return Response(b"", status=200, headers=[])
    if action == "size":
        return Response(b"x" * int(arg), headers=[("content-type", "application/octet-stream")])
    if action == "error":
        raise RuntimeError("conformance failure")
    if action == "panic":
        raise ZeroDivisionError("conformance panic")
    if action == "json":
        return {"received": req.json()}
    if action == "print":  # output capture (LF_LOGS): attributed by the call's context
        print(f"stdout {arg}")
        print(f"stderr {arg}", file=sys.stderr)
        print(f"output {arg}")
        return Response(b"printed", headers=[("content-type", "text/plain")])
    if action == "sleep":
        time.sleep(int(arg) / 1000)  # ignores the deadline on purpose
        return Response(b"slept", headers=[("content-type", "text/plain")])
    if action == "event":  # the call's CloudEvent as the runtime types it (test_cloudevents.py)
        return _event(req)
    if action == "flaky":
        return _flaky(req)
    query: dict[str, list[str]] = {}
    for name, value in req.query.multi_items():
        query.setdefault(name, []).append(value)
    return {
        "method": req.method,
        "path": req.path,
        "query": req.query_string,
        "query_params": query,
        "headers": [[n.lower(), v] for n, v in req.headers.multi_items()],
        "params": [list(p) for p in req.params.items()],
        "body_size": len(req.body),
        "body_sha256": hashlib.sha256(req.body).hexdigest(),
    }
