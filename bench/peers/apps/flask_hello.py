"""What OpenFaaS's stock python3-http template runs behind of-watchdog: Flask served by waitress, every request
turned into an Event and a Context, handed to `handle`, and the returned dict turned into a response.

Our own rendition of that template's request path (same framework, server and steps), with the canary's body.
Run as a script: `python flask_hello.py PORT`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from flask import Flask, request
from waitress import serve

app = Flask(__name__)


class Event:
    def __init__(self) -> None:
        self.body = request.get_data()
        self.headers = request.headers
        self.method = request.method
        self.query = request.args
        self.path = request.path


class Context:
    def __init__(self) -> None:
        self.hostname = os.getenv("HOSTNAME", "localhost")


def handle(event: Event, context: Context) -> dict[str, Any]:
    return {"statusCode": 200, "body": "Hello, world!\n", "headers": {"content-type": "text/plain; charset=utf-8"}}


def format_response(result: Any) -> Any:
    if result is None:
        return ("", 200)
    if not isinstance(result, dict):
        return (str(result), 200)
    return (result.get("body", ""), result.get("statusCode", 200), result.get("headers", {}))


@app.route("/", defaults={"path": ""}, methods=["GET", "PUT", "POST", "PATCH", "DELETE"])
@app.route("/<path:path>", methods=["GET", "PUT", "POST", "PATCH", "DELETE"])
def call_handler(path: str) -> Any:
    return format_response(handle(Event(), Context()))


if __name__ == "__main__":
    serve(app, host="127.0.0.1", port=int(sys.argv[1]))
