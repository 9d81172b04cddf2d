"""Leader election on a coordination.k8s.io/v1 Lease, so that of N operator replicas exactly one reconciles.

kopf's own peering cannot do this: operators of equal priority all freeze ("If two operators run with the same
priority, all operators issue a warning and freeze", docs.kopf.dev/en/latest/peering/), and unequal priorities
need a per-pod setting. So `lf operator` (with LF_LEADER_ELECTION=true) first waits to hold the Lease, then runs
kopf (standalone) while it keeps renewing; the rules are client-go's leaderelection package:

- The holder renews `spec.renewTime` every `retry_period_s`. A candidate takes the Lease when it is free (no
  holder: released by a leader that stopped cleanly) or when its record has not changed for `lease_duration_s`
  as measured by the candidate's own monotonic clock since it last saw the record change (no clock comparison
  between machines). Every write is a create or a replace at the read resourceVersion, so two candidates can never
  both win one round: the loser gets 409 Conflict.
- A leader that cannot renew for `renew_deadline_s` (< lease_duration_s) stops reconciling and the process exits
  1 (a restarted pod rejoins as a candidate): by the time a standby may take over, the old leader has stopped.
- A leader that stops cleanly (SIGTERM) releases the Lease (no holder), so the standby takes over at once.

While standing by, the process serves the liveness URL itself (kopf serves it while leading), so a standby pod
is live and not restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from lf_controlplane.operator.kube import Conflict, Kube, KubeError

log = logging.getLogger("lf_controlplane.operator.leader")

EXIT_LOST = 1
"""The exit code of a leader that could not renew its Lease in time, or found another holder."""
EXIT_FAILED = 1
"""The exit code when the operator (kopf) itself stopped with an error while leading."""


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw.removesuffix("s"))
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r} must be more than 0 seconds")
    return value


@dataclass(frozen=True)
class ElectionConfig:
    namespace: str
    """Where the Lease lives (LF_LEADER_ELECTION_NAMESPACE; the chart passes the pod's namespace)."""
    identity: str
    """This candidate's name in `spec.holderIdentity` (LF_LEADER_ELECTION_ID; the chart passes the pod's name)."""
    lease_name: str = "lf-operator"
    """LF_LEADER_ELECTION_LEASE."""
    lease_duration_s: float = 15.0
    """LF_LEADER_ELECTION_LEASE_DURATION: how long a standby waits on an unchanged record before taking over."""
    renew_deadline_s: float = 10.0
    """LF_LEADER_ELECTION_RENEW_DEADLINE: a leader that has not renewed for this long stops."""
    retry_period_s: float = 2.0
    """LF_LEADER_ELECTION_RETRY_PERIOD: how often the leader renews and a standby tries."""

    def __post_init__(self) -> None:
        if not self.renew_deadline_s < self.lease_duration_s:
            raise ValueError(
                f"LF_LEADER_ELECTION_RENEW_DEADLINE ({self.renew_deadline_s}s) must be shorter than "
                f"LF_LEADER_ELECTION_LEASE_DURATION ({self.lease_duration_s}s): a leader must stop before a "
                "standby may take over"
            )
        if not self.retry_period_s < self.renew_deadline_s:
            raise ValueError(
                f"LF_LEADER_ELECTION_RETRY_PERIOD ({self.retry_period_s}s) must be shorter than "
                f"LF_LEADER_ELECTION_RENEW_DEADLINE ({self.renew_deadline_s}s)"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ElectionConfig | None:
        """The election's settings, or None when LF_LEADER_ELECTION is not `true` (a single operator)."""
        switch = env.get("LF_LEADER_ELECTION", "").strip().lower()
        if switch in ("", "false", "0"):
            return None
        if switch not in ("true", "1"):
            raise ValueError(f"LF_LEADER_ELECTION={switch!r} is not true or false")
        namespace = env.get("LF_LEADER_ELECTION_NAMESPACE", "").strip()
        if not namespace:
            raise ValueError("LF_LEADER_ELECTION=true needs LF_LEADER_ELECTION_NAMESPACE (where the Lease lives)")
        identity = env.get("LF_LEADER_ELECTION_ID", "").strip() or f"{socket.gethostname()}-{os.getpid()}"
        return cls(
            namespace=namespace,
            identity=identity,
            lease_name=env.get("LF_LEADER_ELECTION_LEASE", "").strip() or cls.lease_name,
            lease_duration_s=_seconds(env, "LF_LEADER_ELECTION_LEASE_DURATION", cls.lease_duration_s),
            renew_deadline_s=_seconds(env, "LF_LEADER_ELECTION_RENEW_DEADLINE", cls.renew_deadline_s),
            retry_period_s=_seconds(env, "LF_LEADER_ELECTION_RETRY_PERIOD", cls.retry_period_s),
        )


def micro_time(moment: dt.datetime) -> str:
    """A MicroTime as the API server takes it (RFC 3339, microseconds, UTC)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    """One candidate's view of the Lease; `try_acquire_or_renew` is one round of the election."""

    def __init__(self, kube: Kube, config: ElectionConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.config = config
        self.clock = clock
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self.holder = ""
        """The holder this candidate last read (itself after a successful round)."""

    def _lease(self, spec: dict[str, Any], resource_version: str | None = None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.config.lease_name, "namespace": self.config.namespace}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    async def try_acquire_or_renew(self) -> bool:
        """True when this candidate holds the Lease after the round (taken or renewed), False when another does or
        the write lost a race. KubeError when the API server cannot be reached or refuses."""
        now = micro_time(dt.datetime.now(dt.UTC))
        me = self.config.identity
        duration = round(self.config.lease_duration_s)
        current = await self.kube.get("Lease", self.config.lease_name, self.config.namespace)
        if current is None:
            fresh = {
                "holderIdentity": me,
                "leaseDurationSeconds": max(duration, 1),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            }
            try:
                await self.kube.create(self._lease(fresh))
            except Conflict:
                return False
            self.holder = me
            return True
        spec: dict[str, Any] = dict(current.get("spec") or {})
        holder = str(spec.get("holderIdentity") or "")
        self.holder = holder
        record = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed, self._observed_at = record, self.clock()
        held_for = float(spec.get("leaseDurationSeconds") or self.config.lease_duration_s)
        if holder and holder != me and self.clock() < self._observed_at + held_for:
            return False  # someone else holds it and has renewed within its duration (by our clock)
        transitions = int(spec.get("leaseTransitions") or 0)
        renewing = holder == me
        new_spec = {
            "holderIdentity": me,
            "leaseDurationSeconds": max(duration, 1),
            "acquireTime": spec.get("acquireTime") if renewing and spec.get("acquireTime") else now,
            "renewTime": now,
            "leaseTransitions": transitions if renewing else transitions + 1,
        }
        try:
            await self.kube.replace(self._lease(new_spec, str(current["metadata"]["resourceVersion"])))
        except Conflict:
            return False
        self.holder = me
        if not renewing:
            log.info("took the lease %s/%s from %r", self.config.namespace, self.config.lease_name, holder or None)
        return True

    async def release(self) -> None:
        """Give the Lease up if this candidate holds it (no holder, duration 1 s), so a standby takes it at once."""
        current = await self.kube.get("Lease", self.config.lease_name, self.config.namespace)
        if current is None or (current.get("spec") or {}).get("holderIdentity") != self.config.identity:
            return
        spec = dict(current["spec"])
        spec.update(
            {"holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": micro_time(dt.datetime.now(dt.UTC))}
        )
        with contextlib.suppress(Conflict):
            await self.kube.replace(self._lease(spec, str(current["metadata"]["resourceVersion"])))


class _StandbyHealth:
    """`GET <liveness path>` → 200 while standing by (kopf serves the same URL once this replica leads)."""

    def __init__(self, url: str | None) -> None:
        self.url = urlsplit(url) if url else None
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        if self.url is None:
            return
        app = web.Application()

        async def healthy(_: web.Request) -> web.Response:
            return web.json_response({"standby": True})

        app.router.add_get(self.url.path or "/", healthy)
        self.runner = web.AppRunner(app, handle_signals=False)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.url.hostname or "0.0.0.0", self.url.port or 80).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


async def _stand_by(elector: Elector, config: ElectionConfig, stopping: asyncio.Event, liveness: str | None) -> bool:
    """Try every retry period until this candidate holds the Lease (True) or is stopped (False)."""
    health = _StandbyHealth(liveness)
    await health.start()
    log.info("standing by for the lease %s/%s as %s", config.namespace, config.lease_name, config.identity)
    try:
        while not stopping.is_set():
            try:
                if await elector.try_acquire_or_renew():
                    return True
            except KubeError as exc:
                log.warning("cannot read or write the lease: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), config.retry_period_s)
        return False
    finally:
        await health.stop()


async def _keep(
    elector: Elector, config: ElectionConfig, stopping: asyncio.Event, leading: asyncio.Future[None]
) -> bool:
    """Renew every retry period while `leading` runs and nobody stops us; True when the Lease was lost (not
    renewed for renew_deadline_s, or another holder found on it)."""
    renewed_at = time.monotonic()
    while not leading.done():
        waited = asyncio.ensure_future(stopping.wait())
        either: set[asyncio.Future[Any]] = {leading, waited}
        await asyncio.wait(either, timeout=config.retry_period_s, return_when=asyncio.FIRST_COMPLETED)
        waited.cancel()
        if stopping.is_set() or leading.done():
            return False
        try:
            if await asyncio.wait_for(elector.try_acquire_or_renew(), config.renew_deadline_s):
                renewed_at = time.monotonic()
        except (KubeError, TimeoutError) as exc:
            log.warning("renewing the lease failed: %s", exc)
        if elector.holder not in ("", config.identity):
            log.error("lost the lease %s/%s to %s; stopping", config.namespace, config.lease_name, elector.holder)
            return True
        if time.monotonic() - renewed_at > config.renew_deadline_s:
            log.error(
                "lost the lease %s/%s: not renewed for %.0fs; stopping",
                config.namespace,
                config.lease_name,
                config.renew_deadline_s,
            )
            return True
    return False


async def run_elected(
    config: ElectionConfig,
    kube: Kube,
    lead: Callable[[asyncio.Event], Awaitable[None]],
    *,
    liveness: str | None = None,
) -> int:
    """Stand by until this candidate holds the Lease, then run `lead(stop_flag)` while renewing it. Returns 0 after
    a clean stop (SIGTERM/SIGINT; the Lease released), EXIT_LOST when the Lease was lost (the operator stopped
    first), EXIT_FAILED when `lead` itself failed (the Lease released)."""
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # lightkube's client: a line per renewal otherwise
    elector = Elector(kube, config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    if not await _stand_by(elector, config, stopping, liveness):
        return 0
    log.info("leading as %s (lease %s/%s)", config.identity, config.namespace, config.lease_name)
    stop_flag = asyncio.Event()
    leading = asyncio.ensure_future(lead(stop_flag))
    failure: BaseException | None = None
    try:
        lost = await _keep(elector, config, stopping, leading)
    finally:
        stop_flag.set()
        try:
            await leading
        except Exception as exc:  # kopf itself failed: give the Lease up, and say so in the exit code
            failure = exc
    if lost:
        return EXIT_LOST
    with contextlib.suppress(KubeError):
        await elector.release()
    log.info("released the lease %s/%s", config.namespace, config.lease_name)
    if failure is not None:
        log.error("the operator stopped with an error: %r", failure)
        return EXIT_FAILED
    return 0
