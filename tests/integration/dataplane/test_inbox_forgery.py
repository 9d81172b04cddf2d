"""A hostile replica against the ingestor's NATS client, on a real nats-server (issue 14, item 1).

A replica sees the reply subject of every request it serves (`_INBOX.<connection's random prefix>.<token>`), and may
publish to any subject. With sequential tokens it could aim a forged reply at the next request: another tenant's
call waiting on the same ingestor connection. Tokens are random (96 bits), so a forged reply lands nowhere.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from lf_core.bus.requester import NatsRequester
from nats.aio.client import Client

pytestmark = pytest.mark.integration


@pytest.fixture
async def requester(nats_url: str) -> AsyncIterator[NatsRequester]:
    client = NatsRequester([nats_url])
    await client.connect()
    yield client
    await client.close()


@pytest.fixture
async def replicas(nats_url: str) -> AsyncIterator[tuple[Client, Client]]:
    """Two other connections: a hostile replica and an honest one (another tenant's function)."""
    hostile, honest = await nats.connect(nats_url), await nats.connect(nats_url)
    yield hostile, honest
    await hostile.close()
    await honest.close()


async def subscribed(nc: Client, subject: str, cb: Any) -> None:
    await nc.subscribe(subject, cb=cb)
    await nc.flush()  # nats-py's flush PING may leave ahead of the SUB: the second one is after it
    await nc.flush()


async def test_a_forged_reply_to_guessed_tokens_never_reaches_a_waiting_call(
    requester: NatsRequester, replicas: tuple[Client, Client]
) -> None:
    hostile, honest = replicas
    seen: asyncio.Queue[str] = asyncio.Queue()
    victim_arrived, release = asyncio.Event(), asyncio.Event()

    async def on_hostile(msg: Any) -> None:
        await seen.put(msg.reply)  # it never answers: it forges

    async def on_victim(msg: Any) -> None:
        victim_arrived.set()
        await release.wait()
        await msg.respond(b"honest")

    await subscribed(hostile, "t.forge.evil", on_hostile)
    await subscribed(honest, "t.forge.good", on_victim)

    own = asyncio.ensure_future(requester.request("t.forge.evil", b"x", 10.0))
    reply_subject = await asyncio.wait_for(seen.get(), 5)
    victim = asyncio.ensure_future(requester.request("t.forge.good", b"y", 10.0))  # the next request after its own
    await asyncio.wait_for(victim_arrived.wait(), 5)

    prefix, _, token = reply_subject.rpartition(".")
    mine = int(token)
    guesses = {mine + d for d in range(-2000, 2001) if mine + d >= 0} | set(range(10_000))  # neighbours, a sweep
    guesses.discard(mine)
    for guess in sorted(guesses):
        await hostile.publish(f"{prefix}.{guess}", b"forged")
    await hostile.publish(reply_subject, b"its own")  # the one subject it was given: proves the path is live
    await hostile.flush()  # the server has routed every forgery before the honest reply is sent
    release.set()

    assert await asyncio.wait_for(own, 5) == b"its own"
    assert await asyncio.wait_for(victim, 5) == b"honest"
    assert requester.pending == {}


async def test_inbox_tokens_are_random_96_bit_numbers(
    requester: NatsRequester, replicas: tuple[Client, Client]
) -> None:
    hostile, _ = replicas
    subjects: list[str] = []

    async def on_request(msg: Any) -> None:
        subjects.append(msg.reply)
        await msg.respond(b"ok")

    await subscribed(hostile, "t.forge.tokens", on_request)
    for _ in range(200):  # one after another: the order a counter would show
        assert await requester.request("t.forge.tokens", b"", 5.0) == b"ok"
    tokens = [int(s.rpartition(".")[2]) for s in subjects]
    assert len(set(tokens)) == 200
    assert all(abs(b - a) > 2**32 for a, b in itertools.pairwise(tokens)), tokens[:5]
    assert all(t < 2**96 for t in tokens)
    assert max(t.bit_length() for t in tokens) > 90  # (all 200 below 2**90: chance 2**-1200)
    bits = [sum(t >> i & 1 for t in tokens) for i in range(96)]
    assert all(40 <= ones <= 160 for ones in bits), bits  # each bit set in about half (±8.5 sd)
