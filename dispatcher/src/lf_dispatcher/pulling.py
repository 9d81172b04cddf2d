"""One function's async calls pulled from its durable consumer on LF_ASYNC, no more at once than its replicas take.

- The consumer `{ns}_{fn}` (filter `lf.async.{ns}.{fn}.*`) is created or updated with ack wait = the function's
  timeout + LF_ASYNC_ACK_GRACE and `max_ack_pending` = `async.maxConcurrency` (1000 without one). Every dispatcher
  replica pulls from the same durable consumer: JetStream hands each message to one of them, and a dispatcher
  that dies holding calls has them redelivered to another after the ack wait.
- The pull window (`Window`): calls this dispatcher holds for the function (running plus asked for in open pull
  requests), at most `concurrency x max(replicas, 1)` of its route entry, capped by `async.maxConcurrency` and
  by what the dispatcher-wide cap (`Capacity`, LF_DISPATCHER_MAX_INFLIGHT) has left. A "busy" answer (or no
  replica at all) is back-pressure: the window shrinks to one less than the calls held when it came (never
  below 1), and the call is NAKed with a short delay without counting as an attempt (`calls`). It grows back by
  one for every window's worth of calls answered, and to the whole target after BUSY_FORGET_S without a busy.
- Pull requests (`$JS.API.CONSUMER.MSG.NEXT`, expiring after PULL_EXPIRES_S) go out for the free part of the
  window; another is sent while one is open only when at least a quarter of the window is free, so a busy
  function gets few large pulls, not one per finished call. Each pull has its own reply token, so its end
  (408 expired, 409) says which pull's remaining calls will not come; the calls a pull delivers arrive on the
  connection's inbox in the order the pulls were sent, and are counted against the oldest open pull.
- A watchdog (`tick`, every half second) forgets pulls lost with the connection (no word for PULL_EXPIRES_S + 2 s,
  or the connection came back in between) and pulls again.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from typing import Any

from lf_core.asynccalls import policy as policies
from lf_core.asynccalls import streams as js
from lf_core.bus import jetstream
from lf_core.bus.errors import BusError
from lf_core.bus.requester import NatsRequester, new_token
from lf_core.contract.routes import FunctionRoute
from lf_core.contract.subjects import invoke_subject

from lf_dispatcher.metrics import FunctionCounts

log = logging.getLogger(__name__)

PULL_EXPIRES_S = 1.0
DEFAULT_MAX_ACK_PENDING = 1000
BUSY_FORGET_S = 5.0
"""After this long without a busy answer the window is back to its whole target."""
STATUS_HEARTBEAT = 100


class Capacity:
    """The dispatcher-wide cap: calls held (running or asked for) over all functions, at most `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.starved: set[Puller] = set()
        """Pullers that wanted more than was left: they pull again as soon as something is released."""

    def free(self) -> int:
        return self.limit - self.used

    def take(self, n: int) -> None:
        self.used += n

    def release(self, n: int) -> None:
        self.used = max(0, self.used - n)
        if self.starved and n > 0:
            waiting, self.starved = self.starved, set()
            for puller in waiting:
                puller.pull()


class Window:
    """How many calls of one function a dispatcher may hold: pure arithmetic, no clock of its own."""

    def __init__(self, target: int) -> None:
        self.target = max(1, target)
        self.limit = self.target
        self.credit = 0
        self.last_busy = float("-inf")

    def resize(self, target: int) -> None:
        """A new target (the route entry changed): a larger one adds its increase, a smaller one caps."""
        target = max(1, target)
        self.limit = max(1, min(target, self.limit + max(0, target - self.target)))
        self.target = target

    def busy(self, held: int, now: float) -> None:
        """A replica answered busy while `held` calls (the busy one included) were out: hold one less."""
        self.limit = max(1, min(self.limit, held - 1))
        self.credit = 0
        self.last_busy = now

    def answered(self, now: float) -> None:
        """A call got an answer other than busy: one more call per window's worth of answers; all of the target
        once no busy came for BUSY_FORGET_S."""
        if self.limit >= self.target:
            return
        if now - self.last_busy >= BUSY_FORGET_S:
            self.limit = self.target
            return
        self.credit += 1
        if self.credit >= self.limit:
            self.limit += 1
            self.credit = 0

    def free(self, held: int) -> int:
        return self.limit - held


def window_target(route: FunctionRoute, default_concurrency: int, cap: int) -> int:
    """concurrency x max(replicas, 1) of the route entry (`default_concurrency` when it has none), capped by its
    async.maxConcurrency and by the dispatcher-wide `cap`."""
    concurrency = route.concurrency if route.concurrency > 0 else default_concurrency
    target = concurrency * max(route.replicas, 1)
    if route.async_rule.max_concurrency is not None and route.async_rule.max_concurrency > 0:
        target = min(target, route.async_rule.max_concurrency)
    return max(1, min(target, cap))


def policy_of(route: FunctionRoute) -> policies.AsyncPolicy:
    rule = route.async_rule
    return policies.AsyncPolicy(
        max_attempts=rule.max_attempts,
        backoff_s=rule.backoff_s,
        max_age_s=rule.max_age_s,
        result_ttl_s=rule.result_ttl_s,
    )


def consumer_config_of(route: FunctionRoute, ack_wait_s: float) -> dict[str, Any]:
    max_pending = route.async_rule.max_concurrency or DEFAULT_MAX_ACK_PENDING
    return js.consumer_config(route.namespace, route.name, ack_wait_s=ack_wait_s, max_ack_pending=max_pending)


class Puller:
    """The pull side of one function; what it pulls is routed to `lf_dispatcher.calls` by `functions`."""

    def __init__(
        self,
        route: FunctionRoute,
        *,
        conn: NatsRequester,
        capacity: Capacity,
        counts: FunctionCounts,
        ack_grace_s: float,
        default_concurrency: int,
    ) -> None:
        self.conn = conn
        self.capacity = capacity
        self.counts = counts
        self.ack_grace_s = ack_grace_s
        self.default_concurrency = default_concurrency
        self.namespace, self.function = route.namespace, route.name
        self.consumer = js.consumer_name(route.namespace, route.name)
        self.subject = invoke_subject(route.namespace, route.name)
        self.next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{js.ASYNC_STREAM}.{self.consumer}"
        self.window = Window(1)
        self.route = route
        self.timeout_s = 1.0
        self.ack_wait_s = 1.0
        self.policy = policies.AsyncPolicy()
        self._config: dict[str, Any] = {}
        self._apply(route)
        self.held = 0
        """Calls delivered and not finished (running, or being recorded)."""
        self.open = 0
        """Calls asked for in open pull requests and not delivered yet."""
        self.pulls: collections.OrderedDict[int, list[float]] = collections.OrderedDict()
        """token -> [calls still to come, sent at]; in the order sent."""
        self.ready = False
        self.stopping = False
        self._reconnects = conn.reconnects
        self._ensuring: asyncio.Task[None] | None = None
        self._last_ensure = 0.0

    # -- configuration ----------------------------------------------------------------------------------------------

    def _apply(self, route: FunctionRoute) -> None:
        self.route = route
        self.timeout_s = max(route.timeout_ms, 1) / 1000
        self.ack_wait_s = self.timeout_s + self.ack_grace_s
        self.policy = policy_of(route)
        self.window.resize(window_target(route, self.default_concurrency, self.capacity.limit))
        self.counts.window = self.window.limit
        self._config = consumer_config_of(route, self.ack_wait_s)

    def update(self, route: FunctionRoute) -> None:
        """The route entry changed: new limits now, the consumer updated if its ack wait or cap moved."""
        old = self._config
        self._apply(route)
        if self._config != old:
            self.ensure()
        self.pull()

    def start(self) -> None:
        self.ensure()

    def ensure(self) -> None:
        """Create or update the consumer in the background (retried while the broker is away), then pull."""
        if self._ensuring is not None and not self._ensuring.done():
            self._ensuring.cancel()
        self._last_ensure = time.monotonic()
        self._ensuring = asyncio.get_running_loop().create_task(self._ensure())

    async def _ensure(self) -> None:
        delay = 0.2
        while not self.stopping:
            try:
                await js.ensure_consumer(self.conn.request_headers, self._config)
                break
            except (BusError, jetstream.JetStreamError, TimeoutError) as exc:
                log.warning(
                    "async_consumer_setup_failed", extra={"fields": {"consumer": self.consumer, "error": repr(exc)}}
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        if self.stopping:
            return
        first = not self.ready
        self.ready = True
        if first:
            log.info(
                "async_ready",
                extra={
                    "fields": {"consumer": self.consumer, "ack_wait_s": self.ack_wait_s, "window": self.window.limit}
                },
            )
        self.pull()

    def stop(self) -> None:
        """Pull no more; calls delivered after this are handed back (NAK) to another dispatcher."""
        self.stopping = True
        if self._ensuring is not None:
            self._ensuring.cancel()
        self._forget_pulls()
        self.capacity.starved.discard(self)

    # -- pulling ----------------------------------------------------------------------------------------------------

    def pull(self) -> None:
        if not self.ready or self.stopping:
            return
        batch = min(self.window.free(self.held + self.open), self.capacity.free())
        if batch <= 0:
            if self.capacity.free() <= 0:
                self.capacity.starved.add(self)
            return
        if self.open and batch < max(1, self.window.limit // 4):
            return  # a pull is open: wait for a worthwhile batch
        token = new_token()
        body = json.dumps({"batch": batch, "expires": int(PULL_EXPIRES_S * 1e9)}).encode()
        self.conn.streams[token] = lambda _r, _p, status, _h: self._pull_ended(token, status)
        if not self.conn.publish_reply(self.next_subject, f"{self.conn.inbox_prefix}{token}", body):
            self.conn.streams.pop(token, None)
            return
        self.pulls[token] = [float(batch), time.monotonic()]
        self.counts.pulls += 1
        self.open += batch
        self.capacity.take(batch)

    def _pull_ended(self, token: int, status: int) -> None:
        if status == STATUS_HEARTBEAT:
            return
        self.conn.streams.pop(token, None)
        entry = self.pulls.pop(token, None)
        if entry is not None:
            left = int(entry[0])
            self.open -= left
            self.capacity.release(left)
        if status == 409 and time.monotonic() - self._last_ensure > 1.0:
            self.ensure()  # the consumer may be gone (deleted, or lost with a broker's store)
            return
        self.pull()

    def delivered(self) -> None:
        """A call of this function arrived (counted against the oldest open pull)."""
        if self.pulls:
            token, entry = next(iter(self.pulls.items()))
            entry[0] -= 1
            if entry[0] <= 0:
                del self.pulls[token]
                self.conn.streams.pop(token, None)
            self.open -= 1
        else:
            self.capacity.take(1)  # a late delivery of a pull we had given up on
        self.held += 1

    def finished(self) -> None:
        self.held -= 1
        self.capacity.release(1)
        self.pull()

    def _forget_pulls(self) -> None:
        for token in self.pulls:
            self.conn.streams.pop(token, None)
        self.capacity.release(self.open)
        self.pulls.clear()
        self.open = 0

    def tick(self, now: float) -> None:
        """The watchdog: pulls lost with the connection are forgotten, then pull again."""
        if self.pulls:
            reconnected = self.conn.reconnects != self._reconnects
            oldest = next(iter(self.pulls.values()))[1]
            if reconnected or now - oldest > PULL_EXPIRES_S + 2:
                self._forget_pulls()
        self._reconnects = self.conn.reconnects
        self.counts.window = self.window.limit
        self.pull()
