"""The only module that talks to the Kubernetes API (lightkube, async): server-side apply under one field manager,
deletes that tolerate absence, reads and status patches of our custom resources. Used by the operator and `lf`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightkube import AsyncClient, KubeConfig
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import ConfigMap, Namespace, Secret
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.types import PatchType

from lf_controlplane.operator.specs import GROUP, VERSION

FIELD_MANAGER = "lf-operator"

FunctionResource = create_namespaced_resource(GROUP, VERSION, "Function", "functions")
TriggerResource = create_namespaced_resource(GROUP, VERSION, "Trigger", "triggers")

_KINDS: dict[str, Any] = {
    "ConfigMap": ConfigMap,
    "Deployment": Deployment,
    "PodDisruptionBudget": PodDisruptionBudget,
    "NetworkPolicy": NetworkPolicy,
    "Function": FunctionResource,
    "Trigger": TriggerResource,
    "Lease": Lease,
    "Secret": Secret,  # the callback keys' two (operator/callbackkeys.py); the chart's RBAC names them
}


class KubeError(RuntimeError):
    """An API call failed; the message carries the apiserver's reason."""


class Conflict(KubeError):  # noqa: N818 (the apiserver's word)
    """The object changed since it was read (409): read it again."""


def owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    """Whether `obj` has an ownerReference to the object of `uid` (what the operator's children all carry)."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return bool(uid) and any(ref.get("uid") == uid for ref in refs)


def describe(obj: Mapping[str, Any]) -> str:
    """`Kind namespace/name` of an object, for messages."""
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', '')} {meta.get('namespace', '')}/{meta.get('name', '')}"


def _as_dict(obj: Any) -> dict[str, Any]:
    if hasattr(obj, "to_dict"):
        return dict(obj.to_dict())
    return dict(obj)


def _error(exc: ApiError) -> KubeError:
    return KubeError(f"{exc.status.code} {exc.status.reason}: {exc.status.message}")


class Kube:
    def __init__(self, client: AsyncClient, field_manager: str = FIELD_MANAGER) -> None:
        self.client = client
        self.field_manager = field_manager

    @classmethod
    def connect(
        cls, kubeconfig: str | None = None, context: str | None = None, field_manager: str = FIELD_MANAGER
    ) -> Kube:
        """A client from `kubeconfig` (default: $KUBECONFIG, ~/.kube/config, or in-cluster)."""
        if kubeconfig is not None:
            config = KubeConfig.from_file(kubeconfig).get(context_name=context)
            return cls(AsyncClient(config=config, field_manager=field_manager), field_manager)
        if context is not None:
            return cls(AsyncClient(config=KubeConfig.from_env().get(context_name=context)), field_manager)
        return cls(AsyncClient(field_manager=field_manager), field_manager)

    @property
    def namespace(self) -> str:
        return str(self.client.namespace)

    async def close(self) -> None:
        await self.client.close()

    async def foreign(self, obj: Mapping[str, Any], owner_uid: str) -> dict[str, Any] | None:
        """The stored object of `obj`'s kind and name when it exists without an ownerReference to the object of
        `owner_uid` (None: there is none, or it is that owner's). Someone else's object is never to be applied
        over: a forced apply would rewrite its fields and add our ownerReference to it."""
        meta = obj.get("metadata") or {}
        current = await self.get(str(obj["kind"]), str(meta["name"]), str(meta.get("namespace", "")))
        if current is None or owned_by(current, owner_uid):
            return None
        return current

    async def apply(self, obj: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply (forced: the operator owns what it applies; callers check `foreign` first). Returns
        the object as stored."""
        try:
            resource = from_dict(dict(obj))
            applied = await self.client.apply(resource, field_manager=self.field_manager, force=True, dry_run=dry_run)
        except ApiError as exc:
            raise _error(exc) from exc
        return _as_dict(applied)

    async def delete(self, kind: str, name: str, namespace: str) -> bool:
        """Delete if present; False when it was already gone."""
        try:
            await self.client.delete(_KINDS[kind], name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                return False
            raise _error(exc) from exc
        return True

    async def delete_owned(self, kind: str, name: str, namespace: str, owner_uid: str) -> bool:
        """Delete the object if it is owned by the object of `owner_uid`; False when it is gone or someone else's
        (then it is left as it is). The delete carries the uid read as a precondition, so an object replaced by
        another of the same name in between is not deleted either."""
        current = await self.get(kind, name, namespace)
        if current is None or not owned_by(current, owner_uid):
            return False
        options = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": current["metadata"]["uid"]},
        }
        # lightkube's delete() takes no body: its request builder, with DeleteOptions as the body.
        generic = self.client._client  # lightkube is pinned in uv.lock
        request = generic.prepare_request("delete", res=_KINDS[kind], name=name, namespace=namespace)
        request.data = options
        try:
            response = await generic.send(generic.build_adapter_request(request))  # type: ignore[no-untyped-call]
            generic.handle_response("delete", response, request)
        except ApiError as exc:
            if exc.status.code in (404, 409):  # gone, or no longer the object read (precondition failed)
                return False
            raise _error(exc) from exc
        return True

    async def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        try:
            return _as_dict(await self.client.get(_KINDS[kind], name, namespace=namespace))
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise _error(exc) from exc

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create; Conflict when an object of that name exists already."""
        try:
            return _as_dict(await self.client.create(from_dict(dict(obj))))
        except ApiError as exc:
            if exc.status.code == 409:
                raise Conflict(str(exc.status.message)) from exc
            raise _error(exc) from exc

    async def replace(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Replace (PUT) the object at the resourceVersion in its metadata; Conflict when it has moved on since."""
        try:
            return _as_dict(await self.client.replace(from_dict(dict(obj))))
        except ApiError as exc:
            if exc.status.code == 409:
                raise Conflict(str(exc.status.message)) from exc
            raise _error(exc) from exc

    async def list(self, kind: str, namespace: str, labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        try:
            selector: dict[str, Any] | None = dict(labels) if labels else None
            return [_as_dict(obj) async for obj in self.client.list(_KINDS[kind], namespace=namespace, labels=selector)]
        except ApiError as exc:
            raise _error(exc) from exc

    async def patch_status(
        self, kind: str, name: str, namespace: str, status: Mapping[str, Any], resource_version: str | None = None
    ) -> None:
        """Merge-patch the status subresource of a Function or Trigger (lists in it are replaced whole). With
        `resource_version` the patch only applies to that version of the object, else Conflict."""
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            await self.client.patch(_KINDS[kind].Status, name, body, namespace=namespace, patch_type=PatchType.MERGE)
        except ApiError as exc:
            if exc.status.code == 404:
                return
            if exc.status.code == 409:
                raise Conflict(str(exc.status.message)) from exc
            raise _error(exc) from exc

    async def namespace_exists(self, name: str) -> bool:
        try:
            await self.client.get(Namespace, name)
        except ApiError as exc:
            if exc.status.code == 404:
                return False
            raise _error(exc) from exc
        return True
