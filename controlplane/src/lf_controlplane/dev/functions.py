"""The functions `lf dev` runs: replicas of each function folder, replaced in place when its files change.

A reload starts the new replicas before it stops the old ones (which drain what they hold), so a changed handler
is picked up without dropping calls.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lf_core.contract.specs import Function

from lf_controlplane.dev import builds, venvs
from lf_controlplane.dev.folders import FunctionFolder, fingerprint
from lf_controlplane.dev.supervising import Printer, ProcessSpec, Supervised, print_line
from lf_controlplane.natsserver import free_port

# Exit code of a Python runtime that recycled itself after too many stuck handlers (EX_TEMPFAIL).
RECYCLED = 75


class MissingSecretError(RuntimeError):
    pass


class NotReadyError(RuntimeError):
    """New replicas did not start serving; their output says why (import error, crash, ...)."""


READY_MARKER = '"event":"ready"'


@dataclass(frozen=True)
class RuntimePaths:
    state_dir: Path
    secrets_source: Path

    def venv(self, function: Function) -> Path:
        return self.state_dir / "venvs" / f"{function.namespace}.{function.name}"

    def secrets(self, function: Function) -> Path:
        return self.state_dir / "secrets" / function.namespace / function.name


def runtime_env(
    function: Function, *, code_dir: Path, nats_url: str, pythonpath: str, secrets_dir: Path
) -> dict[str, str]:
    """The environment of one replica: the platform's, then the function's own `env`, then the runtime
    contract (LF_*), which a function's env cannot override."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LF_")}
    env.update(function.env)
    env.update(
        {
            "LF_NATS_URL": nats_url,
            "LF_FUNCTION": function.name,
            "LF_NAMESPACE": function.namespace,
            "LF_HANDLER": function.handler,
            "LF_FUNCTION_DIR": str(code_dir),
            "LF_CONCURRENCY": str(function.concurrency),
            "LF_MAX_RESPONSE_BYTES": str(function.max_response_bytes),
            "LF_SECRETS_DIR": str(secrets_dir),
            "PYTHONPATH": pythonpath,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def materialize_secrets(function: Function, source: Path, target: Path) -> None:
    """Copy the secrets a function declares (and only those) from `source` into its own folder, mode 0600."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True, mode=0o700)
    for name in function.secrets:
        origin = source / name
        if not origin.is_file():
            raise MissingSecretError(f"secret {name!r} of {function.name} not found: expected a file at {origin}")
        destination = target / name
        shutil.copyfile(origin, destination)
        destination.chmod(0o600)


@dataclass
class RunningFunction:
    folder: FunctionFolder
    function: Function
    fingerprint: str
    replicas: list[Supervised] = field(default_factory=list)
    generation: int = 1


@dataclass
class FunctionRunner:
    """Starts, replaces and stops the replicas of functions."""

    paths: RuntimePaths
    nats_url: str
    printer: Printer = print_line
    on_change: Callable[[], None] = lambda: None
    drain_grace: float = 30.0
    ready_timeout: float = 60.0

    async def start(self, folder: FunctionFolder, generation: int = 1) -> RunningFunction:
        """Prepare the function's environment and secrets, start its replicas and wait until they serve.

        Raises RequirementsError, MissingSecretError or NotReadyError (a failed Go/Rust build too) when it cannot
        start; nothing is left running then.
        """
        assert folder.function is not None
        function = folder.function
        digest = fingerprint(folder.path)
        env = await venvs.prepare(folder.path, self.paths.venv(function))
        secrets_dir = self.paths.secrets(function)
        materialize_secrets(function, self.paths.secrets_source, secrets_dir)
        process_env = runtime_env(
            function,
            code_dir=folder.path,
            nats_url=self.nats_url,
            pythonpath=env.pythonpath(folder.path),
            secrets_dir=secrets_dir,
        )
        try:  # the interpreter for Python; Go and Rust are built with their runtime first (cached)
            argv = await builds.runtime_argv(function, folder.path, self.paths.state_dir / "builds", self.printer)
        except builds.BuildError as exc:
            raise NotReadyError(f"{function.name}: {exc}") from exc
        running = RunningFunction(folder=folder, function=function, fingerprint=digest, generation=generation)
        for index in range(function.replicas):
            # each replica, whatever its runtime, serves its own /metrics (docs/metrics.md)
            replica_env = {**process_env, "LF_METRICS_PORT": str(free_port()), "LF_METRICS_HOST": "127.0.0.1"}
            spec = ProcessSpec(
                label=f"{function.name}-{generation}.{index}",
                argv=argv,
                env=replica_env,
                cwd=folder.path,
                ready_marker=READY_MARKER,
            )
            replica = Supervised(spec=spec, printer=self.printer, on_change=self.on_change)
            replica.start()
            running.replicas.append(replica)
        ready = await asyncio.gather(*(r.wait_ready(self.ready_timeout) for r in running.replicas))
        if not all(ready):
            await self.stop(running)
            raise NotReadyError(
                f"{function.name}: {ready.count(False)} of {len(ready)} new replicas did not start serving "
                f"(see their output above)"
            )
        return running

    async def stop(self, running: RunningFunction) -> None:
        for replica in running.replicas:
            await replica.stop(self.drain_grace)
