"""The broker harness itself: a real nats-server with JetStream and the raised max_payload."""

from __future__ import annotations

import nats
import pytest
from lf_controlplane.natsserver import MAX_PAYLOAD

pytestmark = pytest.mark.integration


async def test_server_accepts_max_payload_and_jetstream(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        assert nc.max_payload == MAX_PAYLOAD
        info = await nc.jetstream().account_info()
        assert info.limits is not None
    finally:
        await nc.close()
