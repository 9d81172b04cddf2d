"""The state file of a running `lf dev` (`.lf/state.json`): what `lf list` shows.

Written atomically on every change of a process's state; removed when `lf dev` stops.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import msgspec

from lf_controlplane.dev.functions import RunningFunction
from lf_controlplane.dev.supervising import State, Supervised
from lf_controlplane.urls import function_url

FILE = "state.json"

Health = Literal["running", "starting", "degraded", "failed"]


class ReplicaState(msgspec.Struct, kw_only=True):
    label: str
    pid: int | None
    state: str
    restarts: int
    last_exit: int | None
    metrics_url: str | None = None
    """The replica's own `/metrics` (None when it was started without LF_METRICS_PORT)."""


class FunctionState(msgspec.Struct, kw_only=True):
    name: str
    namespace: str
    path: str
    url: str | None
    state: Health
    replicas: int
    ready: int
    restarts: int
    error: str | None = None
    replica_states: list[ReplicaState] = msgspec.field(default_factory=list)


class DevState(msgspec.Struct, kw_only=True):
    base_url: str
    pid: int
    started_at: float
    ingestor: str
    functions: list[FunctionState]
    nats_url: str = ""
    """The broker `lf dev` uses (for `lf logs`)."""
    metrics_url: str = ""
    """The ingestor's `/metrics`, on its admin listener (not on `base_url`)."""


def _replica(replica: Supervised) -> ReplicaState:
    return ReplicaState(
        label=replica.spec.label,
        pid=replica.pid,
        state=str(replica.state),
        restarts=replica.restarts,
        last_exit=replica.last_exit,
        metrics_url=metrics_url(replica.spec.env),
    )


def metrics_url(env: dict[str, str]) -> str | None:
    port = env.get("LF_METRICS_PORT", "")
    if not port or port == "0":
        return None
    return f"http://{env.get('LF_METRICS_HOST', '127.0.0.1')}:{port}/metrics"


def function_health(replicas: list[Supervised]) -> Health:
    up = sum(r.state == State.RUNNING for r in replicas)
    if replicas and up == len(replicas):
        return "running"
    if any(r.restarts for r in replicas):
        return "degraded"
    return "starting"


def snapshot(
    *,
    base_url: str,
    pid: int,
    started_at: float,
    running: list[RunningFunction],
    failed: dict[str, str],
    ingestor: Supervised | None,
    nats_url: str = "",
    metrics_url: str = "",
) -> DevState:
    functions = [
        FunctionState(
            name=r.function.name,
            namespace=r.function.namespace,
            path=str(r.folder.path),
            url=function_url(base_url, r.function.namespace, r.function.name),
            state=function_health(r.replicas),
            replicas=len(r.replicas),
            ready=sum(x.state == State.RUNNING for x in r.replicas),
            restarts=sum(x.restarts for x in r.replicas),
            error=failed.get(str(r.folder.path)),
            replica_states=[_replica(x) for x in r.replicas],
        )
        for r in running
    ]
    running_paths = {str(r.folder.path) for r in running}
    functions += [
        FunctionState(
            name=Path(path).name,
            namespace="",
            path=path,
            url=None,
            state="failed",
            replicas=0,
            ready=0,
            restarts=0,
            error=error,
        )
        for path, error in failed.items()
        if path not in running_paths
    ]
    return DevState(
        base_url=base_url,
        pid=pid,
        started_at=started_at,
        ingestor="stopped" if ingestor is None else str(ingestor.state),
        functions=sorted(functions, key=lambda f: (f.namespace, f.name)),
        nats_url=nats_url,
        metrics_url=metrics_url,
    )


def write(state_dir: Path, state: DevState) -> None:
    target = state_dir / FILE
    temporary = target.with_suffix(".tmp")
    temporary.write_bytes(msgspec.json.encode(state))
    os.replace(temporary, target)


def read(state_dir: Path) -> DevState | None:
    """The state of the `lf dev` that owns `state_dir`, or None when none is running there."""
    try:
        state = msgspec.json.decode((state_dir / FILE).read_bytes(), type=DevState)
    except (FileNotFoundError, msgspec.DecodeError):
        return None
    try:
        os.kill(state.pid, 0)
    except ProcessLookupError:
        return None
    return state


def clear(state_dir: Path) -> None:
    (state_dir / FILE).unlink(missing_ok=True)
