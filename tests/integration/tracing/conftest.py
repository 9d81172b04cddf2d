"""Fixtures of the tracing suite: the in-process OTLP collector and the LF_ROUTES bucket."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats
import pytest
from lf_core.contract.subjects import ROUTES_BUCKET

from tests.otlpcollector import Collector


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector.running() as collector:
        yield collector


@pytest.fixture
async def kv(nats_url: str) -> AsyncIterator[Any]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        bucket = await js.key_value(ROUTES_BUCKET)
    except Exception:
        bucket = await js.create_key_value(bucket=ROUTES_BUCKET, history=1)
    yield bucket
    await nc.close()
