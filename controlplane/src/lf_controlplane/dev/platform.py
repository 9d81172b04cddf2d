"""`lf dev`: the local platform. Starts the broker, the ingestor, the dispatcher (async calls: `python -m
lf_dispatcher`, supervised like the ingestor, its output next to the ingestor's) and every function, then keeps
them in step with the folders on disk until Ctrl-C or SIGTERM.

Shutdown order matters: the ingestor first (it stops accepting and finishes the calls it holds, which still
need the runtimes), then the dispatcher (it stops pulling and finishes the async calls it holds, which still
need the runtimes too), then the runtimes (they drain), then the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nats
from lf_core.contract.routes import encode_route, route_key, route_of
from lf_core.contract.subjects import ROUTES_BUCKET
from nats.aio.client import Client as NatsClient
from nats.js.errors import BucketNotFoundError, NoKeysError
from nats.js.kv import KeyValue
from watchfiles import awatch

from lf_controlplane.dev import state
from lf_controlplane.dev.folders import FunctionFolder, discover, fingerprint, is_ignored
from lf_controlplane.dev.functions import (
    FunctionRunner,
    MissingSecretError,
    NotReadyError,
    RunningFunction,
    RuntimePaths,
)
from lf_controlplane.dev.supervising import ProcessSpec, Supervised, print_line
from lf_controlplane.dev.triggers import read_triggers, trigger_entries
from lf_controlplane.dev.venvs import RequirementsError
from lf_controlplane.natsserver import NatsServer, free_port
from lf_controlplane.urls import function_url

ROUTES_TIMEOUT_S = 10.0  # one write to LF_ROUTES; a broker that does not answer in this time is a failure


class StartupError(RuntimeError):
    """A part of the platform did not come up; the message says which and where to look."""


@dataclass(frozen=True)
class DevSettings:
    root: Path
    host: str = "127.0.0.1"
    port: int = 8080
    state_dir: Path = Path(".lf")
    secrets_dir: Path | None = None
    nats_url: str | None = None  # an existing broker; None starts the embedded one
    workers: int = 1
    drain_grace: float = 30.0
    reload: bool = True
    admin_port: int = 0  # the ingestor's admin listener (GET /metrics); 0: a free port, chosen at start

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass
class DevPlatform:
    settings: DevSettings
    broker: NatsServer | None = None
    nc: NatsClient | None = None
    routes: KeyValue | None = None
    published: dict[str, bytes] | None = None  # what this lf dev last wrote to LF_ROUTES; None before the first write
    ingestor: Supervised | None = None
    dispatcher: Supervised | None = None
    runner: FunctionRunner | None = None
    running: dict[str, RunningFunction] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    started_at: float = field(default_factory=time.time)
    nats_url: str = ""
    metrics_url: str = ""  # the ingestor's /metrics, on its admin listener (never on the public port)
    trigger_problems: list[str] = field(default_factory=list)  # refused Trigger manifests, as last printed
    dispatcher_metrics_url: str = ""  # the dispatcher's /metrics, on its own admin listener

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop_requested.set)
        try:
            await self.start()
            watcher = asyncio.create_task(self._watch()) if self.settings.reload else None
            await self.stop_requested.wait()
            if watcher is not None:
                watcher.cancel()
        finally:
            await self.shutdown()

    async def start(self) -> None:
        settings = self.settings
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        nats_url = settings.nats_url or self._start_broker()
        self.nats_url = nats_url
        self.nc = await nats.connect(nats_url, max_reconnect_attempts=-1)
        self.routes = await _routes_bucket(self.nc)
        self.runner = FunctionRunner(
            paths=RuntimePaths(
                state_dir=settings.state_dir.resolve(),
                secrets_source=(settings.secrets_dir or settings.root / ".secrets").resolve(),
            ),
            nats_url=nats_url,
            on_change=self._write_state,
            drain_grace=settings.drain_grace,
        )
        await self._sync_functions(discover(settings.root), initial=True)
        await self._start_ingestor(nats_url)
        await self._start_dispatcher(nats_url)
        self._announce()

    def _start_broker(self) -> str:
        self.broker = NatsServer(state_dir=(self.settings.state_dir / "nats").resolve()).start()
        print_line("nats", f"embedded nats-server on {self.broker.url} (JetStream in {self.broker.state_dir})")
        return self.broker.url

    async def _start_ingestor(self, nats_url: str) -> None:
        settings = self.settings
        admin_host = os.environ.get("LF_ADMIN_HOST") or "127.0.0.1"
        admin_port = settings.admin_port or free_port()
        self.metrics_url = f"http://{admin_host}:{admin_port}/metrics"
        env = {
            **os.environ,
            "LF_HOST": settings.host,
            "LF_PORT": str(settings.port),
            "LF_ADMIN_HOST": admin_host,
            "LF_ADMIN_PORT": str(admin_port),
            "LF_NATS_URL": nats_url,
            "LF_WORKERS": str(settings.workers),
            # The ingestor may take as long to drain as lf dev waits for it.
            "LF_DRAIN_TIMEOUT": f"{settings.drain_grace}s",
            "PYTHONUNBUFFERED": "1",
        }
        spec = ProcessSpec(label="ingestor", argv=[sys.executable, "-m", "lf_dataplane"], env=env, cwd=Path.cwd())
        self.ingestor = Supervised(spec=spec, on_change=self._write_state)
        self.ingestor.start()
        await self._wait_ready(f"{settings.base_url}/readyz", timeout=30.0)

    async def _start_dispatcher(self, nats_url: str) -> None:
        """The dispatcher (async calls, triggers), started as a process like the ingestor; ready once it logged
        `ready`. Callbacks are signed with keys in the state folder (`lf callbacks key` prints them)."""
        settings = self.settings
        admin_host = os.environ.get("LF_ADMIN_HOST") or "127.0.0.1"
        admin_port = free_port()
        self.dispatcher_metrics_url = f"http://{admin_host}:{admin_port}/metrics"
        env = {
            "LF_CALLBACK_KEYS_DIR": str(settings.state_dir.resolve() / "callback-keys"),
            **os.environ,
            "LF_ADMIN_HOST": admin_host,
            "LF_ADMIN_PORT": str(admin_port),
            "LF_NATS_URL": nats_url,
            "LF_DRAIN_TIMEOUT": f"{settings.drain_grace}s",
            "PYTHONUNBUFFERED": "1",
        }
        spec = ProcessSpec(
            label="dispatcher", argv=[sys.executable, "-m", "lf_dispatcher"], env=env, cwd=Path.cwd(),
            ready_marker='"event":"ready"',
        )  # fmt: skip
        self.dispatcher = Supervised(spec=spec, on_change=self._write_state)
        self.dispatcher.start()
        if not await self.dispatcher.wait_ready(30.0):
            raise StartupError("the dispatcher did not become ready within 30 s (see its output)")

    async def _wait_ready(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(url)).status_code == 200:
                        return
                await asyncio.sleep(0.05)
        raise StartupError(f"the ingestor did not become ready at {url} within {timeout:.0f} s (see its output)")

    def _announce(self) -> None:
        base = self.settings.base_url
        print_line("lf dev", f"ingestor on {base}")
        print_line("lf dev", f"metrics on {self.metrics_url} (admin listener, not on the public port)")
        print_line("lf dev", f"dispatcher metrics on {self.dispatcher_metrics_url}")
        for running in self.running.values():
            fn = running.function
            print_line("lf dev", f"  {fn.name:<20} {function_url(base, fn.namespace, fn.name)}")
        for key, error in self.failed.items():
            print_line("lf dev", f"  {key:<20} NOT STARTED: {error}")
        print_line("lf dev", "watching for changes; Ctrl-C stops everything")

    async def _sync_functions(self, folders: list[FunctionFolder], *, initial: bool = False) -> None:
        """Bring the running set in line with `folders`: start new, replace changed, stop removed."""
        wanted = {str(f.path): f for f in folders}
        for path_key in [k for k in self.running if k not in wanted]:
            await self._remove(path_key)
        self.failed = {k: v for k, v in self.failed.items() if k in wanted}
        for path_key, folder in wanted.items():
            current = self.running.get(path_key)
            if folder.function is None:
                self._fail(path_key, folder.error or "invalid function folder", keeps_old=current is not None)
                continue
            if current is not None and current.fingerprint == fingerprint(folder.path):
                self.failed.pop(path_key, None)  # back to the version that runs: nothing to report
                continue
            await self._replace(path_key, folder, current, initial=initial)
        await self._publish_routes()
        self._write_state()

    async def _replace(
        self, path_key: str, folder: FunctionFolder, current: RunningFunction | None, *, initial: bool
    ) -> None:
        assert self.runner is not None and folder.function is not None
        if current is not None and (current.function.name, current.function.namespace) != (
            folder.function.name,
            folder.function.namespace,
        ):
            await self._remove(path_key)
            current = None
        clash = self._name_clash(path_key, folder)
        if clash:
            self._fail(path_key, clash, keeps_old=current is not None)
            return
        generation = 1 if current is None else current.generation + 1
        try:
            started = await self.runner.start(folder, generation=generation)
        except (RequirementsError, MissingSecretError, NotReadyError) as exc:
            self._fail(path_key, str(exc), keeps_old=current is not None)
            return
        self.running[path_key] = started
        self.failed.pop(path_key, None)
        if current is not None:
            print_line("lf dev", f"reloading {folder.function.name}: new replicas started, old ones draining")
            await self.runner.stop(current)
        elif not initial:
            base = self.settings.base_url
            fn = folder.function
            print_line("lf dev", f"added {fn.name}: {function_url(base, fn.namespace, fn.name)}")

    def _name_clash(self, path_key: str, folder: FunctionFolder) -> str | None:
        assert folder.function is not None
        for other_key, other in self.running.items():
            if other_key != path_key and (other.function.namespace, other.function.name) == (
                folder.function.namespace,
                folder.function.name,
            ):
                return f"function {folder.function.name!r} is already served from {other.folder.path}"
        return None

    def _fail(self, path_key: str, error: str, *, keeps_old: bool) -> None:
        self.failed[path_key] = error
        note = " (the previous version keeps serving)" if keeps_old else ""
        print_line("lf dev", f"{path_key}: {error}{note}")

    async def _remove(self, path_key: str) -> None:
        running = self.running.pop(path_key)
        assert self.runner is not None
        print_line("lf dev", f"removing {running.function.name}")
        await self.runner.stop(running)

    async def _publish_routes(self) -> None:
        """Make LF_ROUTES hold exactly the running functions.

        The bucket is listed once, at start, to delete stale keys of an earlier run; after that the changes are
        computed against what this process wrote. (Listing it on every change depended on nats-py's `keys()`
        watcher, which in one CI run left a removed function's route in place.)
        """
        assert self.routes is not None
        routes = [route_of(r.function, revision=r.fingerprint[:16]) for r in self.running.values()]
        wanted = {route_key(route): encode_route(route) for route in routes}
        wanted.update(self._trigger_entries())
        if self.published is None:
            try:
                stale = set(await asyncio.wait_for(self.routes.keys(), ROUTES_TIMEOUT_S))
            except NoKeysError:
                stale = set()
            previous: dict[str, bytes] = dict.fromkeys(stale, b"")
        else:
            previous = self.published
        for key in previous.keys() - wanted.keys():
            await asyncio.wait_for(self.routes.delete(key), ROUTES_TIMEOUT_S)
        for key, value in wanted.items():
            if previous.get(key) != value:
                await asyncio.wait_for(self.routes.put(key, value), ROUTES_TIMEOUT_S)
        self.published = wanted

    def _trigger_entries(self) -> dict[str, bytes]:
        """The entries of the Trigger manifests in the running functions' folders (dev/triggers.py); refusals are
        printed when they change."""
        found = [read_triggers(r.folder.path, r.function) for r in self.running.values()]
        entries, problems = trigger_entries(t for triggers, _ in found for t in triggers)
        problems = [p for _, refused in found for p in refused] + problems
        if problems != self.trigger_problems:
            for problem in problems:
                print_line("lf dev", f"trigger NOT SERVED: {problem}")
            self.trigger_problems = problems
        return entries

    async def _watch(self) -> None:
        root = self.settings.root
        async for _changes in awatch(root, watch_filter=lambda _change, path: _relevant(root, path)):
            await self._sync_functions(discover(root))

    def _write_state(self) -> None:
        state.write(
            self.settings.state_dir,
            state.snapshot(
                base_url=self.settings.base_url,
                pid=os.getpid(),
                started_at=self.started_at,
                running=list(self.running.values()),
                failed=self.failed,
                ingestor=self.ingestor,
                nats_url=self.nats_url,
                metrics_url=self.metrics_url,
            ),
        )

    async def shutdown(self) -> None:
        print_line("lf dev", "stopping: ingestor first, then the dispatcher, then functions, then the broker")
        if self.ingestor is not None:
            await self.ingestor.stop(self.settings.drain_grace)
        if self.dispatcher is not None:
            await self.dispatcher.stop(self.settings.drain_grace)
        if self.runner is not None:
            await asyncio.gather(*(self.runner.stop(r) for r in self.running.values()))
        self.running.clear()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        if self.broker is not None:
            self.broker.stop()
        state.clear(self.settings.state_dir)
        print_line("lf dev", "stopped")


async def _routes_bucket(nc: NatsClient) -> KeyValue:
    js = nc.jetstream()
    try:
        return await js.key_value(ROUTES_BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(bucket=ROUTES_BUCKET, history=1)


def _relevant(root: Path, path: str) -> bool:
    try:
        return not is_ignored(Path(path).relative_to(root))
    except ValueError:
        return False
