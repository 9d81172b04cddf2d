"""Reading LF_ROUTES from a test (one short nats-py connection per read)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import nats
from lf_core.contract.subjects import ROUTES_BUCKET
from nats.js.errors import BucketNotFoundError, KeyNotFoundError


async def _get(url: str, key: str) -> tuple[dict[str, Any], int] | None:
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value(ROUTES_BUCKET)
        entry = await kv.get(key)
        return dict(json.loads(entry.value or b"null")), int(entry.revision or 0)
    except (KeyNotFoundError, BucketNotFoundError):
        return None
    finally:
        await nc.close()


def route_entry(url: str, key: str) -> dict[str, Any] | None:
    found = asyncio.run(_get(url, key))
    return None if found is None else found[0]


def route_revision(url: str, key: str) -> int | None:
    """The KV sequence of the entry: it moves on every write, even of the same value."""
    found = asyncio.run(_get(url, key))
    return None if found is None else found[1]
