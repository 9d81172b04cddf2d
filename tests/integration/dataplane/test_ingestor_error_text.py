"""A handler's exception text against a real ingestor (issue 14, item 10): anonymous callers get a generic message
unless the function's spec says `errors: {expose: true}` (carried to the ingestor in its LF_ROUTES entry)."""

from __future__ import annotations

import httpx
import msgspec
import pytest
from lf_core.contract.protocol import ErrorKind
from lf_core.contract.routes import route_of
from lf_core.contract.specs import load_manifest
from lf_native import RequestEnvelope, encode_response
from nats.aio.client import Client
from test_ingestor import client as client
from test_ingestor import ingestor as ingestor
from test_ingestor import nc as nc
from test_ingestor import responder, unique

from tests.harness.ingestor import Ingestor, wait_routed
from tests.harness.routes import Routes, function_route

SECRET = "KeyError: 'postgres://admin:hunter2@db.internal/orders'"


def failing(request: RequestEnvelope) -> bytes:
    return encode_response(500, [], b"", request.call_id, error_kind=ErrorKind.HANDLER, error=SECRET)


@pytest.mark.parametrize("expose", [False, True], ids=["default", "exposed"])
async def test_the_exception_text_reaches_callers_only_when_exposed(
    ingestor: Ingestor, nc: Client, routes: Routes, client: httpx.AsyncClient, expose: bool
) -> None:
    name = unique("errtext")
    await routes.put(msgspec.structs.replace(function_route(name), expose_errors=expose))
    url = f"{ingestor.url}/function/{name}"
    await wait_routed(client, url)
    async with responder(nc, name, failing):
        response = await client.get(url)
    assert response.status_code == 500
    error = response.json()["error"]
    assert (error["code"], error["layer"]) == ("function_error", "function")
    if expose:
        assert error["message"] == SECRET
    else:
        assert "hunter2" not in response.text and "postgres" not in response.text
        assert error["message"].startswith("the function raised an exception")


def test_the_manifest_field_reaches_the_route() -> None:
    manifest = {
        "apiVersion": "litefunctions.io/v1alpha1", "kind": "Function", "metadata": {"name": "fn"},
        "spec": {"errors": {"expose": True}},
    }  # fmt: skip
    assert route_of(load_manifest(manifest)).expose_errors
    del manifest["spec"]
    assert not route_of(load_manifest(manifest)).expose_errors
