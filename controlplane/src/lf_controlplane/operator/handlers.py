"""kopf handlers: decorate, parse at the edge, build, apply, record. No manifests or API calls of their own.

Functions: create/update/resume reconcile (children applied server-side, the route written, status patched);
an invalid spec gets `Valid=False`, a Warning event and no retry (the previous children keep serving). A Function
whose children's names are taken by objects it does not own (OwnershipConflict), or that would take its namespace
over LF_NAMESPACE_MAX_REPLICAS (ReplicaCapExceeded), gets `Valid=False` too and touches nothing, until it changes
(or the operator restarts). Delete removes the route (the finalizer holds the object until it is gone; children
go with their owner); only children owned by the Function are ever deleted. Deployments of ours: every change
re-derives their Function's status. Triggers: HTTP ones become route entries (`tr.`), cron and NATS ones entries
the dispatcher runs (`et.`), whose state (LF_TRIGGERS) is copied into their status on a timer.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import kopf
import msgspec
from lf_core.contract.routes import (
    EventTriggerRoute,
    HttpTriggerRoute,
    claim_conflict,
    conflict_message,
    displaced_by,
    event_trigger_key,
    event_trigger_route,
)
from lf_core.contract.specs import unsupported_trigger_fields
from lf_core.contract.triggerstate import status_fields

import lf_controlplane.operator.callbackkeyhandlers  # noqa: F401 (registers the callback keys' handlers)
from lf_controlplane.operator import manifests, specs, status
from lf_controlplane.operator.config import OperatorConfig
from lf_controlplane.operator.kube import Conflict, Kube, describe, owned_by
from lf_controlplane.operator.metrics import METRICS, mark_invalid
from lf_controlplane.operator.routestore import RouteStore
from lf_controlplane.operator.specs import GROUP, VERSION

log = logging.getLogger("lf_controlplane.operator")

FINALIZER = "litefunctions.io/operator"
RETRY_S = 10
ROUTE_CONFLICT = "RouteConflict"
"""The Valid/Ready reason of a Trigger refused because another namespace claimed its host or path prefix first."""
CLAIM_RECHECK_S = 10.0
"""How often a Trigger refused for a claim is looked at again (so it serves once the owner's Trigger is gone)."""
TRIGGER_STATE_S = 10.0
"""How often a cron or NATS Trigger's status takes the state the dispatcher recorded (lastFire, nextFire, ...)."""


@dataclass
class Context:
    config: OperatorConfig
    kube: Kube
    routes: RouteStore | None = None
    namespace_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    """One per namespace: a replica cap is checked and the Deployment applied under it, so two Functions
    reconciled at once cannot both take the last replicas."""

    def namespace_lock(self, namespace: str) -> asyncio.Lock:
        return self.namespace_locks.setdefault(namespace, asyncio.Lock())

    async def route_store(self) -> RouteStore:
        """The NATS connection, made on first use so the operator starts (and reports) without NATS."""
        if self.routes is None:
            try:
                self.routes = await RouteStore.connect(self.config.nats_url, replicas=self.config.stream_replicas)
            except Exception as exc:
                raise kopf.TemporaryError(f"NATS at {self.config.nats_url} unreachable: {exc}", delay=RETRY_S) from exc
        return self.routes


def _ctx(memo: kopf.Memo) -> Context:
    ctx = memo.get("lf")
    if not isinstance(ctx, Context):
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return ctx


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    config = OperatorConfig.from_env()
    if config.metrics_port:
        try:
            port = METRICS.serve(config.metrics_host, config.metrics_port)
        except OSError as exc:
            raise kopf.PermanentError(f"metrics on {config.metrics_host}:{config.metrics_port}: {exc}") from exc
        log.info("metrics on http://%s:%d/metrics", config.metrics_host, port)
    memo["lf"] = Context(config, Kube.connect())


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    METRICS.close()
    ctx = memo.get("lf")
    if isinstance(ctx, Context):
        await ctx.kube.close()
        if ctx.routes is not None:
            await ctx.routes.close()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


# -- Functions ---------------------------------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, "functions")
@kopf.on.create(GROUP, VERSION, "functions")
@kopf.on.update(GROUP, VERSION, "functions")
@METRICS.measured("Function")
async def reconcile_function(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    ctx = _ctx(memo)
    try:
        fn = specs.parse_function(body)
    except specs.InvalidSpec as exc:
        mark_invalid()
        kopf.warn(body, reason="InvalidSpec", message=str(exc))
        current = await _own_deployment(ctx, body)
        _record_status(body, status.function_status(body, current, invalid=str(exc)), patch)
        return
    to_apply, to_delete = manifests.children(fn, ctx.config)
    # Never over someone else's object: a Function named like a NetworkPolicy, a PDB or a ConfigMap NAME-source
    # that is not its own would rewrite it (and delete it later). Nothing is applied then.
    foreign = [describe(found) for obj in to_apply if (found := await ctx.kube.foreign(obj, fn.uid)) is not None]
    if foreign:
        one = len(foreign) == 1
        message = (
            f"not owned by this Function: {', '.join(foreign)}. The operator applies nothing and leaves "
            f"{'it as it is' if one else 'them as they are'} (rename the Function, or remove the other object)"
        )
        await _refuse(ctx, body, patch, "OwnershipConflict", message)
        return
    async with ctx.namespace_lock(fn.namespace):
        if ctx.config.namespace_max_replicas:
            deployments = await ctx.kube.list(
                "Deployment", fn.namespace, labels={"app.kubernetes.io/managed-by": manifests.MANAGED_BY}
            )
            others, own = manifests.namespace_replicas(deployments, fn.name)
            over = manifests.over_replica_cap(fn, others, ctx.config.namespace_max_replicas, own)
            if over is not None:
                await _refuse(ctx, body, patch, "ReplicaCapExceeded", over)
                return
        deployment = None
        for obj in to_apply:
            stored = await ctx.kube.apply(obj)
            if obj["kind"] == "Deployment":
                deployment = stored
    for kind, name in to_delete:  # only if ours: a ConfigMap NAME-source or PDB NAME of someone else stays
        await ctx.kube.delete_owned(kind, name, fn.namespace, fn.uid)
    asked = manifests.desired_replicas(fn)
    if asked is None and deployment is not None:  # KEDA's: the count the Deployment has as applied
        asked = deployment.get("spec", {}).get("replicas")
    METRICS.set_desired(fn.namespace, fn.name, asked)
    fields = {
        "url": manifests.url_of(fn, ctx.config),
        "selector": manifests.selector_string(fn.name),
        "revision": manifests.revision(fn),
        "image": manifests.image_of(fn, ctx.config),
    }
    try:
        await (await ctx.route_store()).put_function(manifests.make_route(fn))
    except Exception:
        _record_status(body, status.function_status(body, deployment, routed=False, **fields), patch)
        raise
    _record_status(body, status.function_status(body, deployment, routed=True, **fields), patch)
    log.info("function %s/%s reconciled (revision %s)", fn.namespace, fn.name, fields["revision"])


async def _own_deployment(ctx: Context, body: kopf.Body) -> dict[str, Any] | None:
    """The Function's Deployment, if there is one and it is the Function's (not someone else's of that name)."""
    current = await ctx.kube.get("Deployment", body.meta.name or "", body.meta.namespace or "")
    return current if current is not None and owned_by(current, body.meta.uid or "") else None


async def _refuse(ctx: Context, body: kopf.Body, patch: kopf.Patch, reason: str, message: str) -> None:
    """`Valid=False` with `reason` and a Warning event, as for an invalid spec: nothing is applied, the previous
    children (if any) keep serving, no retry (a change to the Function, or a restart's resume, tries again)."""
    mark_invalid()
    kopf.warn(body, reason=reason, message=message)
    current = await _own_deployment(ctx, body)
    _record_status(body, status.function_status(body, current, invalid=message, reason=reason), patch)


def _record_status(body: kopf.Body, fields: dict[str, Any], patch: kopf.Patch) -> None:
    patch.status.update(fields)
    METRICS.set_phase(body.meta.namespace or "", body.meta.name or "", str(fields.get("phase", "")))


@kopf.on.delete(GROUP, VERSION, "functions")
@METRICS.measured("Function")
async def remove_function(name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    ctx = _ctx(memo)
    await (await ctx.route_store()).delete_function(namespace or "", name)
    METRICS.forget(namespace or "", name)


@kopf.on.event("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": manifests.MANAGED_BY})
@METRICS.measured("Deployment")
async def deployment_changed(body: kopf.Body, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    ctx = _ctx(memo)
    name = body.meta.labels.get(manifests.FUNCTION_LABEL)
    namespace = body.meta.namespace
    if not name or not namespace:
        return
    deployment = None if event.get("type") == "DELETED" else body
    # The reconcile handler may patch the same status meanwhile: patch only the version read, never over it.
    for _attempt in range(5):
        function = await ctx.kube.get("Function", name, namespace)
        if function is None or not owned_by(body, str(function["metadata"].get("uid", ""))):
            return  # no such Function, or a Deployment with our labels that is not its own
        derived = status.derive_function_status(function, deployment)
        METRICS.set_phase(namespace, name, str(derived["phase"]))
        if not status.status_changed(function.get("status"), derived):
            return
        version = str(function["metadata"]["resourceVersion"])
        try:
            await ctx.kube.patch_status("Function", name, namespace, derived, resource_version=version)
        except Conflict:
            continue
        return
    raise kopf.TemporaryError("the Function kept changing", delay=1)


# -- Triggers ----------------------------------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, "triggers")
@kopf.on.create(GROUP, VERSION, "triggers")
@kopf.on.update(GROUP, VERSION, "triggers")
@METRICS.measured("Trigger")
async def reconcile_trigger(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    await _reconcile_trigger(body, patch, memo)


async def _reconcile_trigger(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo) -> None:
    ctx = _ctx(memo)
    try:
        tr = specs.parse_trigger(body)
    except specs.InvalidSpec as exc:
        mark_invalid()
        kopf.warn(body, reason="InvalidSpec", message=str(exc))
        patch.status.update(
            status.trigger_status(body, phase="Failed", ready=False, reason="InvalidSpec", message=str(exc))
        )
        return
    store = await ctx.route_store()
    event = event_trigger_route(tr.trigger)
    if event is not None:
        await store.delete_trigger(tr.namespace, tr.name)  # (it may have been an HTTP Trigger before)
        await _reconcile_event_trigger(ctx, store, body, patch, event)
        return
    await store.delete_event_trigger(tr.namespace, tr.name)
    route = manifests.make_trigger_route(tr)
    if route is None:
        await store.delete_trigger(tr.namespace, tr.name)
        fields = ", ".join(unsupported_trigger_fields(tr.trigger))
        message = (
            f"{fields}: {tr.trigger.kind} triggers are not served yet (only http), nothing would call the function"
        )
        kopf.warn(body, reason="Unsupported", message=message)
        patch.status.update(
            status.trigger_status(body, phase="Failed", ready=False, reason="Unsupported", message=message, valid=False)
        )
        return
    route = msgspec.structs.replace(route, created=_created(body))
    others = await store.trigger_routes()
    owner = claim_conflict(route, others)
    if owner is not None:  # another namespace claimed the host (or any-host path prefix) first: refused, rechecked
        await store.delete_trigger(tr.namespace, tr.name)
        message = conflict_message(route, owner)
        kopf.warn(body, reason=ROUTE_CONFLICT, message=message)
        patch.status.update(
            status.trigger_status(body, phase="Failed", ready=False, reason=ROUTE_CONFLICT, message=message)
        )
        return
    await store.put_trigger(route)
    for loser in displaced_by(route, others):  # written before this older claim was seen: they lose it now
        await _displace(ctx, store, loser, route)
    key = f"tr.{tr.namespace}.{tr.name}"
    if await ctx.kube.get("Function", tr.trigger.function, tr.namespace) is None:
        message = f"function {tr.trigger.function!r} not found in {tr.namespace}; the route serves once it exists"
        patch.status.update(
            status.trigger_status(
                body, phase="Waiting", ready=False, reason="FunctionNotFound", message=message, route=key
            )
        )
        return
    patch.status.update(status.trigger_status(body, phase="Ready", ready=True, reason="Routed", message="", route=key))


async def _reconcile_event_trigger(
    ctx: Context, store: RouteStore, body: kopf.Body, patch: kopf.Patch, event: EventTriggerRoute
) -> None:
    """A cron or NATS Trigger: its `et.` entry (the dispatcher runs it), Ready once its function exists."""
    await store.put_event_trigger(event)
    key = event_trigger_key(event)
    recorded = status_fields(await store.trigger_state(event.namespace, event.name))
    if await ctx.kube.get("Function", event.function, event.namespace) is None:
        message = f"function {event.function!r} not found in {event.namespace}; the trigger fires once it exists"
        wanted = status.trigger_status(
            body, phase="Waiting", ready=False, reason="FunctionNotFound", message=message, route=key
        )
    else:
        reason = "Scheduled" if event.kind == "cron" else "Subscribed"
        wanted = status.trigger_status(body, phase="Ready", ready=True, reason=reason, message="", route=key)
    patch.status.update({**wanted, **recorded})


def _runs_in_dispatcher(spec: kopf.Spec, **_: Any) -> bool:
    return bool(spec.get("cron") or spec.get("nats"))


@kopf.timer(
    GROUP, VERSION, "triggers", interval=TRIGGER_STATE_S, initial_delay=TRIGGER_STATE_S, when=_runs_in_dispatcher
)
@METRICS.measured("Trigger")
async def record_trigger_state(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, name: str, namespace: str | None, **_: Any
) -> None:
    """lastFire, nextFire, lastCallId, lastError of a cron or NATS Trigger, from LF_TRIGGERS (written only when they
    changed)."""
    store = await _ctx(memo).route_store()
    recorded = status_fields(await store.trigger_state(namespace or "", name))
    if recorded and status.status_changed(body.get("status"), recorded):
        patch.status.update(recorded)


def _created(body: kopf.Body) -> str:
    return str(body.get("metadata", {}).get("creationTimestamp") or "")


async def _displace(ctx: Context, store: RouteStore, loser: HttpTriggerRoute, owner: HttpTriggerRoute) -> None:
    """Take the route of `loser` (a younger claim of another namespace) out, and say so on its Trigger; the
    recheck timer brings it back if `owner` goes away."""
    await store.delete_trigger(loser.namespace, loser.name)
    current = await ctx.kube.get("Trigger", loser.name, loser.namespace)
    if current is None:
        return
    message = conflict_message(loser, owner)
    refused = status.trigger_status(current, phase="Failed", ready=False, reason=ROUTE_CONFLICT, message=message)
    await ctx.kube.patch_status("Trigger", loser.name, loser.namespace, refused)
    log.warning("trigger %s/%s displaced: %s", loser.namespace, loser.name, message)


def _refused_by_claim(status: kopf.Status, **_: Any) -> bool:
    return any(
        c.get("type") == "Valid" and c.get("status") == "False" and c.get("reason") == ROUTE_CONFLICT
        for c in status.get("conditions") or []
    )


@kopf.timer(GROUP, VERSION, "triggers", interval=CLAIM_RECHECK_S, initial_delay=CLAIM_RECHECK_S, when=_refused_by_claim)
@METRICS.measured("Trigger")
async def recheck_trigger(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """A Trigger refused for a claim another namespace holds is looked at again until that claim goes away."""
    await _reconcile_trigger(body, patch, memo)


@kopf.on.delete(GROUP, VERSION, "triggers")
@METRICS.measured("Trigger")
async def remove_trigger(name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    ctx = _ctx(memo)
    store = await ctx.route_store()
    await store.delete_trigger(namespace or "", name)
    await store.delete_event_trigger(namespace or "", name)
