"""Rate limits, the response cache and overload gates in the RSGI shell, over fakes: no sockets, no sleeps."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pytest
from lf_core.bus.errors import BrokerUnavailable
from lf_core.contract.routes import FunctionRoute
from lf_core.contract.specs import CacheRule, RateRule
from lf_core.stores.local import LocalRateLimiter, LocalStore
from lf_dataplane.calls.caching import CachePolicy, ResponseCache, storable_ttl
from lf_dataplane.calls.overload import Gate
from lf_dataplane.calls.routetable import Defaults, Routes
from lf_dataplane.http.app import Ingestor
from lf_dataplane.settings import Settings
from lf_native import encode_response

from tests.unit.dataplane.test_ingestor_app import Proto
from tests.unit.dataplane.test_ingestor_app import Scope as BaseScope


class Scope(BaseScope):
    def __init__(self, *args: object, client: str = "10.0.0.1:5555", **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.client = client


class Bus:
    """Answers every request with `reply` once `release` is set (set by default)."""

    connected = True

    def __init__(self, reply: bytes | None = None) -> None:
        self.reply = reply or encode_response(200, [("content-type", "text/plain")], b"fresh")
        self.requests: list[bytes] = []
        self.release = asyncio.Event()
        self.release.set()

    async def request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        self.requests.append(payload)
        await self.release.wait()
        return self.reply

    async def request_headers(
        self, subject: str, payload: bytes, headers: Sequence[tuple[str, str]], timeout: float
    ) -> bytes:
        raise BrokerUnavailable("no JetStream here: the async endpoints are tested against a real nats-server")


def entry(revision: str = "r1", **fields: object) -> FunctionRoute:
    return FunctionRoute(
        namespace="default", name="fn", timeout_ms=1000, max_request_bytes=1000, max_response_bytes=1000,
        revision=revision, **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def app_with(bus: Bus, route: FunctionRoute, settings: Settings | None = None, **kwargs: object) -> Ingestor:
    settings = settings or Settings()
    routes = Routes(Defaults(function_queue=settings.function_queue))
    routes.replace_all({"fn.default.fn": route})
    return Ingestor(settings, bus, routes, **kwargs)  # type: ignore[arg-type]


async def call(app: Ingestor, scope: Scope, proto: Proto | None = None) -> tuple[int, dict[str, str], bytes]:
    proto = proto or Proto()
    await app.__rsgi__(scope, proto)
    assert proto.response is not None
    return proto.response


# -- rate limits ----------------------------------------------------------------------------------------------------


async def test_rate_limit_per_ip_answers_429_with_retry_after_and_ratelimit_headers() -> None:
    bus = Bus()
    app = app_with(bus, entry(rate_limit=RateRule(rps=1, burst=2, key="ip")))
    first = await call(app, Scope("GET", "/function/fn"))
    assert first[0] == 200
    assert (first[1]["ratelimit-limit"], first[1]["ratelimit-remaining"]) == ("2", "1")
    assert (await call(app, Scope("GET", "/function/fn")))[0] == 200
    status, headers, body = await call(app, Scope("GET", "/function/fn"))
    assert status == 429
    assert json.loads(body)["error"] == {
        "code": "rate_limited", "message": json.loads(body)["error"]["message"], "layer": "ingestor",
    }  # fmt: skip
    assert headers["retry-after"] == "1"
    assert (headers["ratelimit-limit"], headers["ratelimit-remaining"], headers["ratelimit-reset"]) == ("2", "0", "2")
    assert len(bus.requests) == 2  # the refused call never reached the function
    assert (await call(app, Scope("GET", "/function/fn", client="10.0.0.2:1")))[0] == 200  # another client
    assert app.rate_limited == 1


async def test_rate_limit_per_function_counts_every_client() -> None:
    app = app_with(Bus(), entry(rate_limit=RateRule(rps=1, burst=1, key="function")))
    assert (await call(app, Scope("GET", "/function/fn", client="1.1.1.1:1")))[0] == 200
    assert (await call(app, Scope("GET", "/function/fn", client="2.2.2.2:1")))[0] == 429


async def test_client_ip_header_is_used_only_when_configured() -> None:
    route = entry(rate_limit=RateRule(rps=1, burst=1, key="ip"))
    app = app_with(Bus(), route, Settings(client_ip_header="x-forwarded-for"))
    for ip in ("5.5.5.5", "6.6.6.6"):
        scope = Scope("GET", "/function/fn", headers=[("x-forwarded-for", f"spoofed, {ip}")])
        assert (await call(app, scope))[0] == 200
    assert (await call(app, Scope("GET", "/function/fn", headers=[("x-forwarded-for", "6.6.6.6")])))[0] == 429


# -- the response cache ---------------------------------------------------------------------------------------------


async def test_get_is_cached_and_marked_hit_or_miss() -> None:
    bus = Bus()
    app = app_with(bus, entry(cache=CacheRule(ttl_s=60)))
    status, headers, body = await call(app, Scope("GET", "/function/fn/a", "q=1"))
    assert (status, headers["x-cache"], body) == (200, "MISS", b"fresh")
    status, headers, body = await call(app, Scope("GET", "/function/fn/a", "q=1"))
    assert (status, headers["x-cache"], body, headers["age"]) == (200, "HIT", b"fresh", "0")
    assert headers["content-type"] == "text/plain"
    assert len(headers["x-call-id"]) == 32
    head = await call(app, Scope("HEAD", "/function/fn/a", "q=1"))
    assert (head[0], head[1]["x-cache"], head[2]) == (200, "HIT", b"")
    await call(app, Scope("GET", "/function/fn/a", "q=2"))
    await call(app, Scope("POST", "/function/fn/a", "q=1"))
    assert len(bus.requests) == 3  # a/q=1 once, a/q=2, and the POST (not cached)


async def test_vary_headers_split_entries_and_credentials_bypass_the_cache() -> None:
    bus = Bus()
    app = app_with(bus, entry(cache=CacheRule(ttl_s=60, vary=("accept",))))
    for accept in ("a", "b", "a"):
        await call(app, Scope("GET", "/function/fn", headers=[("accept", accept)]))
    assert len(bus.requests) == 2
    status, headers, _ = await call(app, Scope("GET", "/function/fn", headers=[("authorization", "Bearer x")]))
    assert "x-cache" not in headers and len(bus.requests) == 3


async def test_opted_in_post_keys_on_the_body() -> None:
    bus = Bus()
    app = app_with(bus, entry(cache=CacheRule(ttl_s=60, methods=("GET", "HEAD", "POST"))))
    for body in (b"one", b"two", b"one"):
        scope = Scope("POST", "/function/fn", headers=[("content-length", str(len(body)))])
        await call(app, scope, Proto([body]))
    assert len(bus.requests) == 2


@pytest.mark.parametrize(
    ("headers", "status", "ttl"),
    [
        ([], 200, 60.0),
        ([("Cache-Control", "no-store")], 200, 0.0),
        ([("cache-control", "private, max-age=10")], 200, 0.0),
        ([("cache-control", "public, max-age=10")], 200, 10.0),
        ([("cache-control", "max-age=10, s-maxage=5")], 200, 5.0),
        ([("set-cookie", "a=b")], 200, 0.0),
        ([], 500, 0.0),
        ([], 404, 60.0),
    ],
    ids=["plain", "no-store", "private", "max-age", "s-maxage", "set-cookie", "500", "404"],
)
def test_what_may_be_stored(headers: list[tuple[str, str]], status: int, ttl: float) -> None:
    assert storable_ttl(status, headers, 60.0) == ttl


async def test_function_no_store_is_honoured() -> None:
    bus = Bus(encode_response(200, [("cache-control", "no-store")], b"secret"))
    app = app_with(bus, entry(cache=CacheRule(ttl_s=60)))
    for _ in range(2):
        assert (await call(app, Scope("GET", "/function/fn")))[1]["x-cache"] == "MISS"
    assert len(bus.requests) == 2


async def test_stampede_one_call_fills_while_the_others_wait() -> None:
    bus = Bus()
    bus.release.clear()
    app = app_with(bus, entry(cache=CacheRule(ttl_s=60)))
    calls = [asyncio.ensure_future(call(app, Scope("GET", "/function/fn"))) for _ in range(20)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(bus.requests) == 1
    bus.release.set()
    answers = await asyncio.gather(*calls)
    assert len(bus.requests) == 1
    assert sorted(a[1]["x-cache"] for a in answers) == ["HIT"] * 19 + ["MISS"]


async def test_a_new_revision_drops_the_functions_entries() -> None:
    bus = Bus()
    routes = Routes()
    routes.replace_all({"fn.default.fn": entry("r1", cache=CacheRule(ttl_s=60))})
    app = Ingestor(Settings(), bus, routes)
    await call(app, Scope("GET", "/function/fn"))
    assert len(app.cache) == 1
    routes.put("fn.default.fn", entry("r2", cache=CacheRule(ttl_s=60)))
    assert len(app.cache) == 0
    assert (await call(app, Scope("GET", "/function/fn")))[1]["x-cache"] == "MISS"


async def test_the_shared_tier_answers_a_miss_of_another_process_and_is_filled_in_the_background() -> None:
    shared = LocalStore(1 << 20, 1 << 20)
    bus = Bus()
    route = entry(cache=CacheRule(ttl_s=60))
    one = app_with(bus, route, cache=ResponseCache(max_bytes=1 << 20, max_entry_bytes=1 << 20, shared=shared))
    two = app_with(bus, route, cache=ResponseCache(max_bytes=1 << 20, max_entry_bytes=1 << 20, shared=shared))
    await call(one, Scope("GET", "/function/fn"))
    await asyncio.sleep(0)  # the background write
    status, headers, body = await call(two, Scope("GET", "/function/fn"))
    assert (status, headers["x-cache"], body) == (200, "HIT", b"fresh")
    assert len(bus.requests) == 1 and two.cache.shared_hits == 1


def test_cache_memory_is_bounded() -> None:
    cache = ResponseCache(max_bytes=1000, max_entry_bytes=500)
    policy = CachePolicy("fn.default", "r", CacheRule(ttl_s=60))
    from lf_dataplane.calls.caching import Entry

    for i in range(50):
        key = policy.key("GET", f"/{i}", "", {})
        assert key is not None
        cache._keep(key, Entry(200, [], b"x" * 100, 0, 1e12))
    assert cache.size <= 1000 and len(cache) < 10


# -- overload -------------------------------------------------------------------------------------------------------


async def test_gate_queues_then_refuses_and_never_loses_a_slot() -> None:
    gate = Gate(2, 1)
    assert gate.try_enter() and gate.try_enter() and not gate.try_enter()
    waiter = asyncio.ensure_future(gate.enter(1.0))
    await asyncio.sleep(0)
    assert not await gate.enter(1.0)  # the queue (1) is full
    gate.leave()
    assert await waiter
    assert gate.inflight == 2
    assert not await gate.enter(0.01)  # timed out
    gate.leave()
    gate.leave()
    assert gate.inflight == 0 and not gate.waiters
    assert gate.refused == 2


async def test_function_cap_answers_429_and_worker_cap_503_both_with_retry_after() -> None:
    bus = Bus()
    bus.release.clear()
    app = app_with(bus, entry(max_inflight=1), Settings(function_queue=1))
    held = [asyncio.ensure_future(call(app, Scope("GET", "/function/fn"))) for _ in range(2)]  # 1 runs, 1 waits
    await asyncio.sleep(0.01)
    status, headers, body = await call(app, Scope("GET", "/function/fn"))
    assert (status, headers["retry-after"], json.loads(body)["error"]["code"]) == (429, "1", "concurrency_limit")
    bus.release.set()
    assert [r[0] for r in await asyncio.gather(*held)] == [200, 200]

    bus.release.clear()
    app = app_with(bus, entry(), Settings(max_inflight=1, max_queue=0))
    held = [asyncio.ensure_future(call(app, Scope("GET", "/function/fn")))]
    await asyncio.sleep(0.01)
    status, headers, body = await call(app, Scope("GET", "/function/fn"))
    assert (status, headers["retry-after"], json.loads(body)["error"]["layer"]) == (503, "1", "ingestor")
    probe = await call(app, Scope("GET", "/readyz"))
    assert probe[0] == 200  # probes never wait behind calls
    bus.release.set()
    await asyncio.gather(*held)
    assert app.gate.inflight == 0


async def test_limits_reach_the_call_through_a_route_entry_built_from_a_manifest() -> None:
    from lf_core.contract.routes import decode_route, encode_route, route_of
    from lf_core.contract.specs import load_manifest

    function = load_manifest(
        {"apiVersion": "litefunctions.io/v1alpha1", "kind": "Function", "metadata": {"name": "fn"},
         "spec": {"concurrency": 3, "cache": {"ttl": "2s", "vary": ["Accept"]}, "rateLimit": {"rps": 5}}}
    )  # fmt: skip
    route = decode_route(encode_route(route_of(function, revision="abc")))
    assert route.cache == CacheRule(ttl_s=2.0, vary=("accept",), methods=("GET", "HEAD"))
    assert route.rate_limit == RateRule(rps=5, burst=5, key="ip")
    assert (route.max_inflight, route.revision) == (3, "abc")
    old = decode_route(
        b'{"namespace":"default","name":"fn","timeout_ms":1,"max_request_bytes":1,"max_response_bytes":1}'
    )
    assert old.cache is None and old.rate_limit is None and old.max_inflight == 0
    assert isinstance(LocalRateLimiter().take_now("k", 1, 1).allowed, bool)


def test_settings_of_limits_and_valkey() -> None:
    settings = Settings.from_env(
        {"LF_MAX_INFLIGHT": "8", "LF_MAX_QUEUE": "0", "LF_QUEUE_TIMEOUT": "250ms", "LF_FUNCTION_QUEUE": "3",
         "LF_CACHE_MAX_BYTES": "1Mi", "LF_VALKEY_URL": "redis://v:6379/0", "LF_VALKEY_FAILURE": "closed",
         "LF_RATE_LIMIT_MODE": "exact", "LF_RATE_LIMIT_SYNC": "50ms", "LF_CLIENT_IP_HEADER": "X-Forwarded-For",
         "LF_HTTP": "auto"}
    )  # fmt: skip
    assert (settings.max_inflight, settings.max_queue, settings.queue_timeout_s) == (8, 0, 0.25)
    assert (settings.function_queue, settings.cache_max_bytes, settings.valkey_url) == (3, 1 << 20, "redis://v:6379/0")
    assert (settings.valkey_fail_open, settings.rate_limit_exact, settings.rate_limit_sync_s) == (False, True, 0.05)
    assert (settings.client_ip_header, settings.http) == ("x-forwarded-for", "auto")
    defaults = Settings.from_env({})
    assert defaults.valkey_fail_open and not defaults.rate_limit_exact and defaults.http == "1"
    from lf_dataplane.settings import SettingsError

    with pytest.raises(SettingsError, match="LF_VALKEY_FAILURE"):
        Settings.from_env({"LF_VALKEY_FAILURE": "maybe"})
