"""The response cache of the ingestor (Function.spec.cache): two tiers and one filler per key.

- Tier 1, in this process: a dict bounded by total bytes (oldest written go first). A hit is a dict lookup and a
  header list copy: it never waits on anything, Valkey included.
- Tier 2, shared (a `Store`: Valkey on a cluster, nothing in `lf dev`): read on a tier-1 miss before the function
  is called, written asynchronously after a fill (the hot path does not wait for the write).
- Stampede protection: the first miss of a key fills it; concurrent misses of the same key wait for that fill (up
  to their own deadline) and are answered from it. If the answer may not be stored, each waiter calls itself.
- Invalidation on deploy: keys carry the function's revision, so a new revision never reads an old answer (in
  either tier; old tier-2 entries expire by their TTL); a revision change seen in LF_ROUTES (every ingestor
  watches it over NATS) also drops the function's tier-1 entries at once (`drop_function`).

The key: the function and its revision, the Host the request named (two hosts routed to one function are two
entries), the method, path and query, the values of the request headers `spec.cache.vary` lists, and the body's
hash for an opted-in method.

What may be stored: answers to the methods the function caches (GET/HEAD unless it opts others in, their body
hashed into the key), with a status cacheable by default (RFC 9111 §4.2.2), no Set-Cookie, no `Vary: *`, no `Vary`
naming a request header that `spec.cache.vary` does not list (RFC 9111 §4.1: a stored answer may only be reused
for requests that match it in those headers, and ours are matched only on the listed ones), and no
`Cache-Control: no-store | no-cache | private` from the function; `max-age` / `s-maxage` shorten the TTL. Requests
carrying Authorization or Cookie are not served from the cache unless the function varies on that header.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgspec
from lf_core.contract.specs import CacheRule
from lf_core.stores.interface import Store

from lf_dataplane.calls.replies import Header, Reply

log = logging.getLogger(__name__)


CACHE_HEADER = "x-cache"
CACHEABLE_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})
_SENSITIVE = ("authorization", "cookie")
_NOT_STORED = frozenset({"no-store", "no-cache", "private"})
MAX_PENDING_WRITES = 1024
"""Tier-2 writes in flight at once; beyond, a fill is kept in tier 1 only (bounded memory if Valkey is slow)."""


class CachePolicy:
    """A function's cache rule, prepared once per route table build."""

    __slots__ = ("function", "guard", "methods", "prefix", "ttl_s", "vary")

    def __init__(self, function: str, revision: str, rule: CacheRule) -> None:
        self.function = function
        self.ttl_s = rule.ttl_s
        self.vary = rule.vary
        self.methods = frozenset(rule.methods)
        self.prefix = f"{function}\x1f{revision}\x1f"
        self.guard = tuple(h for h in _SENSITIVE if h not in rule.vary)

    def key(self, method: str, rest: str, query: str, headers: Any, body: bytes | None = None) -> str | None:
        """The entry's key, or None when this request may not be answered from the cache."""
        for name in self.guard:
            if name in headers:
                return None
        if method == "HEAD":
            method = "GET"
        host = (headers.get("host") or "").lower()  # HTTP/1.1 carries it; it is what the function sees
        if not self.vary and body is None:
            return f"{self.prefix}{host}\x1f{method} {rest}?{query}"
        parts = [self.prefix, host, "\x1f", method, " ", rest, "?", query]
        for name in self.vary:
            parts.append("\x1f")
            parts.append(headers.get(name) or "")
        if body is not None:
            parts.append("\x1f")
            parts.append(hashlib.blake2b(body, digest_size=16).hexdigest())
        return "".join(parts)


def storable_ttl(status: int, headers: Iterable[Header], ttl_s: float, vary: Iterable[str] = ()) -> float:
    """How long this answer may be kept (0: not at all); `vary` the request headers the key is made of."""
    if status not in CACHEABLE_STATUSES:
        return 0.0
    max_age: float | None = None
    shared_max_age: float | None = None
    for name, value in headers:
        lname = name.lower()
        if lname == "set-cookie":
            return 0.0
        if lname == "vary":
            named = {v.strip().lower() for v in value.split(",")} - {""}
            if "*" in named or not named.issubset(vary):
                return 0.0
        if lname == "cache-control":
            for directive in value.lower().split(","):
                word, _, arg = directive.strip().partition("=")
                if word in _NOT_STORED:
                    return 0.0
                if word in ("max-age", "s-maxage"):
                    try:
                        seconds = float(arg.strip().strip('"'))
                    except ValueError:
                        return 0.0
                    if word == "max-age":
                        max_age = seconds
                    else:
                        shared_max_age = seconds
    limit = shared_max_age if shared_max_age is not None else max_age
    return ttl_s if limit is None else max(0.0, min(ttl_s, limit))


class Entry:
    __slots__ = ("body", "expires", "headers", "status", "stored")

    def __init__(self, status: int, headers: list[Header], body: bytes, stored: float, expires: float) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.stored = stored
        self.expires = expires

    @property
    def size(self) -> int:
        return len(self.body) + sum([len(n) + len(v) for n, v in self.headers]) + 64

    def encode(self) -> bytes:
        return _encode((self.status, self.headers, self.body, self.stored, self.expires))


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(tuple[int, list[tuple[str, str]], bytes, float, float]).decode


def decode_entry(data: bytes) -> Entry | None:
    try:
        status, headers, body, stored, expires = _decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return Entry(status, headers, body, stored, expires)


class ResponseCache:
    """Both tiers and the fills in flight. `clock` is wall time: entries in tier 2 are shared between hosts."""

    def __init__(
        self,
        *,
        max_bytes: int,
        max_entry_bytes: int,
        shared: Store | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self.shared = shared
        self.size = 0
        self.hits = 0
        self.misses = 0
        self.shared_hits = 0
        self._clock = clock
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._flights: dict[str, asyncio.Future[Entry | None]] = {}
        self._writes: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._entries)

    # -- tier 1 --------------------------------------------------------------------------------------------------

    def hit(self, key: str) -> Reply | None:
        """The cached answer for `key` from this process, or None. No await: the hot path."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self._clock()
        if entry.expires <= now:
            self._drop(key)
            return None
        self.hits += 1
        return _answer(entry, now, "HIT")

    def _keep(self, key: str, entry: Entry) -> None:
        size = entry.size
        if size > self.max_entry_bytes:
            return
        self._drop(key)
        self._entries[key] = entry
        self.size += size
        while self.size > self.max_bytes and self._entries:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.size -= entry.size

    def drop_function(self, function: str) -> int:
        """Forget every tier-1 entry of `function` ("name.namespace"), e.g. on a new revision."""
        prefix = f"{function}\x1f"
        keys = [k for k in self._entries if k.startswith(prefix)]
        for key in keys:
            self._drop(key)
        return len(keys)

    # -- misses: tier 2, then one fill per key ----------------------------------------------------------------------

    async def fill(
        self, key: str, policy: CachePolicy, call: Callable[[], Awaitable[Reply]], *, store: bool, wait_s: float
    ) -> Reply:
        """Answer a tier-1 miss: join a fill in flight, else read tier 2, else `call()` and store the answer."""
        flight = self._flights.get(key)
        if flight is not None:
            try:
                async with asyncio.timeout(wait_s):
                    entry = await asyncio.shield(flight)
            except TimeoutError:
                entry = None
            if entry is not None:
                self.hits += 1
                return _answer(entry, self._clock(), "HIT")
            return _miss(await call())
        flight = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        entry = None
        try:
            if self.shared is not None:
                entry = decode_entry(await self.shared.get(key) or b"")
                if entry is not None and entry.expires > self._clock():
                    self._keep(key, entry)
                    self.shared_hits += 1
                    return _answer(entry, self._clock(), "HIT")
                entry = None
            self.misses += 1
            status, headers, body = await call()
            ttl = storable_ttl(status, headers, policy.ttl_s, policy.vary) if store else 0.0
            if ttl > 0 and len(body) <= self.max_entry_bytes:
                now = self._clock()
                entry = Entry(status, list(headers), body, now, now + ttl)
                self._keep(key, entry)
                self._share(key, entry, ttl)
            headers.append((CACHE_HEADER, "MISS"))
            return status, headers, body
        finally:
            del self._flights[key]
            flight.set_result(entry)

    def _share(self, key: str, entry: Entry, ttl: float) -> None:
        if self.shared is None or len(self._writes) >= MAX_PENDING_WRITES:
            return
        task = asyncio.ensure_future(self.shared.set(key, entry.encode(), ttl))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)


def _answer(entry: Entry, now: float, how: str) -> Reply:
    headers = list(entry.headers)
    headers.append((CACHE_HEADER, how))
    headers.append(("age", str(max(0, int(now - entry.stored)))))
    return entry.status, headers, entry.body


def _miss(reply: Reply) -> Reply:
    reply[1].append((CACHE_HEADER, "MISS"))
    return reply
