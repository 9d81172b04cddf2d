"""Issue 14, item 10: no `server: granian` banner. granian adds it to any answer that has no Server header, which
tells a caller which HTTP server (and version line) to look up flaws for; the ingestor sends its own neutral one,
exactly once, whatever the answer (function, error, probe) and whatever Server header a function sets."""

from __future__ import annotations

import httpx
from lf_native import RequestEnvelope, encode_response
from nats.aio.client import Client
from test_ingestor import client as client
from test_ingestor import ingestor as ingestor
from test_ingestor import nc as nc
from test_ingestor import responder, unique

from tests.harness.ingestor import Ingestor, wait_routed
from tests.harness.routes import Routes, function_route


def server_headers(response: httpx.Response) -> list[str]:
    return response.headers.get_list("server")


async def test_no_granian_banner_on_any_answer(
    ingestor: Ingestor, nc: Client, routes: Routes, client: httpx.AsyncClient
) -> None:
    name = unique("banner")
    await routes.put(function_route(name))
    url = f"{ingestor.url}/function/{name}"
    await wait_routed(client, url)

    def handler(request: RequestEnvelope) -> bytes:
        return encode_response(200, [("Server", "my-app/1.2"), ("x-fn", "yes")], b"ok", request.call_id)

    async with responder(nc, name, handler):
        answered = await client.get(url)
    assert answered.status_code == 200 and answered.headers["x-fn"] == "yes"
    others = [await client.get(f"{ingestor.url}{path}") for path in ("/healthz", "/readyz", "/metrics", "/nowhere")]
    others.append(await client.post(f"{ingestor.url}/readyz"))
    others.append(await client.get(f"{ingestor.url}/function/{unique('absent')}"))
    for response in (answered, *others):
        assert server_headers(response) == ["litefunctions"], (response.request.url, response.headers)
