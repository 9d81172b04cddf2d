"""LiteFunctions Python runtime: serves one function's handler over NATS, one process per replica.

A handler is `def handle(req: Request)` or `async def handle(req: Request)`, returning a `Response`, bytes, str,
dict/list (JSON) or None (204). `secret(name)` reads the function's mounted secrets.
"""

from lf_runtime.requests import CloudEvent, Headers, QueryParams, Request, RequestError, Response
from lf_runtime.secrets_files import SecretNotFoundError, secret

__all__ = [
    "CloudEvent",
    "Headers",
    "QueryParams",
    "Request",
    "RequestError",
    "Response",
    "SecretNotFoundError",
    "secret",
]
