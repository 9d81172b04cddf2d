"""The callback signing keys on Kubernetes: the operator is the one writer of two kinds of Secret.

- `lf-callback-keys` in the operator's namespace (LF_CALLBACK_KEYS_NAMESPACE; the chart sets it): every namespace's
  keys, one file `<namespace>.json` each in the format of `lf_core.callbackkeys`. The dispatcher mounts it read-only
  as its LF_CALLBACK_KEYS_DIR (the kubelet updates a mounted Secret in place).
- `lf-callback-key` in each namespace that has Functions: that namespace's own file, published so a receiver there
  can mount it and `lf callbacks key -n NS --kube` reads it with namespace-scoped RBAC.

A Function seen in a namespace whose keys have none that signs gets one (and the namespace's Secret published).

Rotation is asked for on the namespace's Secret, not done by the client: `lf callbacks rotate -n NS --kube` sets the
annotations ROTATE (a request id) and ROTATE_OVERLAP (seconds); the operator, which watches every `lf-callback-key`
(a field selector on the name, which RBAC authorizes by resourceNames), rotates the namespace's keys in
`lf-callback-keys` with `lf_core.callbackkeys.rotated`, records the request as handled there in the same write (so a
request is never carried out twice, even by a new leader), and publishes the result with ROTATED set to the request
id (and ROTATE_ERROR when it was refused). So a tenant rotates its own key with rights on its own Secret only, and
nobody but the operator ever needs to write the Secret that holds every namespace's keys. Whatever else changes in
a published Secret (its data edited, the Secret deleted) is put back from `lf-callback-keys`.

Off (nothing is watched or written) when LF_CALLBACK_KEYS_NAMESPACE is unset. The kopf handlers that run this are
in `callbackkeyhandlers` (this module is also what `lf callbacks key|rotate --kube` uses, without kopf).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lf_core import callbackkeys
from lf_core.callbackkeys import CallbackKeyError, Key
from lightkube import ALL_NS
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Secret
from lightkube.types import PatchType

from lf_controlplane.operator.kube import Conflict, Kube, KubeError

log = logging.getLogger("lf_controlplane.operator.callbackkeys")

KEYS_SECRET = "lf-callback-keys"  # noqa: S105 (a name)
"""Every namespace's keys, in the operator's namespace (mounted by the dispatcher)."""
PUBLISHED_SECRET = "lf-callback-key"  # noqa: S105 (a name)
"""One namespace's keys, in that namespace."""
ROTATE = "litefunctions.io/rotate"
"""On a published Secret, set by `lf callbacks rotate --kube`: the id of a rotation request."""
ROTATE_OVERLAP = "litefunctions.io/rotate-overlap"
"""With ROTATE: seconds the keys that sign now go on signing beside the new one (default 24 h)."""
ROTATED = "litefunctions.io/rotated"
"""Set by the operator on a published Secret: the last request id it handled."""
ROTATE_ERROR = "litefunctions.io/rotate-error"
"""Set by the operator with ROTATED when it refused that request (the reason)."""
KEY_ID = "litefunctions.io/key-id"
"""Set by the operator on a published Secret: the id of the newest key."""
HANDLED = "rotated.litefunctions.io/"
"""On lf-callback-keys, `HANDLED + namespace`: the last rotation request carried out for that namespace."""
MANAGED_LABELS = {"app.kubernetes.io/managed-by": "lf-operator", "app.kubernetes.io/part-of": "litefunctions"}
MAX_OVERLAP_S = 30 * 86400.0
"""The longest overlap a rotation may ask for (the old key keeps signing that long)."""
MAX_KEYS = 4
"""Keys a namespace keeps at most: rotating again drops the oldest beyond this, so a tenant asking for rotation
after rotation cannot grow lf-callback-keys (one Secret, 1 MiB, for every namespace)."""
_REQUEST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
RETRY_S = 30.0
"""A namespace whose key could not be made is tried again on a Function event after this long."""
WATCH_RETRY_S = 5.0
CAS_ATTEMPTS = 10


@dataclass(frozen=True)
class Settings:
    namespace: str | None
    """Where lf-callback-keys is; None: the operator keeps no callback keys."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        value = (os.environ if env is None else env).get("LF_CALLBACK_KEYS_NAMESPACE", "").strip()
        return cls(value or None)


def file_name(namespace: str) -> str:
    return callbackkeys.path_for(Path("."), namespace).name


def _decode_data(secret: Mapping[str, Any] | None, name: str) -> bytes | None:
    raw = ((secret or {}).get("data") or {}).get(name)
    return None if raw is None else base64.b64decode(raw)


def _encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def newest(keys: list[Key]) -> Key:
    """The key made last (keys are appended as they are made; two made in the same second keep that order)."""
    return max(reversed(keys), key=lambda k: k.created)


def parse_overlap(raw: str | None) -> float:
    """The ROTATE_OVERLAP annotation: seconds (absent: 24 h); CallbackKeyError naming it otherwise."""
    if raw is None or not raw.strip():
        return callbackkeys.DEFAULT_OVERLAP_S
    try:
        value = float(raw)
    except ValueError:
        raise CallbackKeyError(f"{ROTATE_OVERLAP}={raw!r} is not a number of seconds") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_OVERLAP_S:
        raise CallbackKeyError(f"{ROTATE_OVERLAP}={raw!r} must be between 0 and {MAX_OVERLAP_S:.0f} seconds (30 days)")
    return value


def check_request(request: str) -> None:
    """A rotation request id: it is recorded in lf-callback-keys, which every namespace shares, so it is short."""
    if not _REQUEST.fullmatch(request):
        raise CallbackKeyError(f"{ROTATE}: {request[:80]!r} is not a request id (1-63 of A-Z a-z 0-9 . _ -)")


@dataclass
class _Master:
    """lf-callback-keys as read: its data (file name → bytes), annotations and resourceVersion (None: absent)."""

    files: dict[str, bytes]
    annotations: dict[str, str]
    version: str | None
    labels: dict[str, str] = field(default_factory=lambda: dict(MANAGED_LABELS))


@dataclass
class CallbackKeys:
    kube: Kube
    namespace: str
    clock: Callable[[], float] = time.time
    _ready: set[str] = field(default_factory=set)
    _failed: dict[str, float] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    # -- lf-callback-keys ---------------------------------------------------------------------------------------------

    async def _read_master(self) -> _Master:
        secret = await self.kube.get("Secret", KEYS_SECRET, self.namespace)
        if secret is None:
            return _Master({}, {}, None)
        data = {name: base64.b64decode(value) for name, value in (secret.get("data") or {}).items()}
        meta = secret.get("metadata") or {}
        annotations = dict(meta.get("annotations") or {})
        return _Master(data, annotations, str(meta["resourceVersion"]), dict(meta.get("labels") or {}))

    async def _write_master(self, master: _Master) -> None:
        """Create or replace at the version read (Conflict: someone wrote it meanwhile)."""
        obj: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": KEYS_SECRET,
                "namespace": self.namespace,
                "labels": master.labels,
                "annotations": master.annotations,
            },
            "data": {name: _encode(data) for name, data in sorted(master.files.items())},
        }
        if master.version is None:
            await self.kube.create(obj)
        else:
            obj["metadata"]["resourceVersion"] = master.version
            await self.kube.replace(obj)

    async def _update(self, change: Callable[[_Master], bool]) -> _Master:
        """Read lf-callback-keys, let `change` edit it (True: write it), write at the version read; again on a
        conflict. Returns it as written (or read, when nothing changed)."""
        async with self._lock:
            for _attempt in range(CAS_ATTEMPTS):
                master = await self._read_master()
                if not change(master):
                    return master
                try:
                    await self._write_master(master)
                except Conflict:
                    continue
                return master
        raise KubeError(f"Secret {self.namespace}/{KEYS_SECRET} kept changing ({CAS_ATTEMPTS} attempts)")

    # -- what the operator does ---------------------------------------------------------------------------------------

    async def ensure(self, namespace: str) -> list[Key]:
        """`namespace` has a key that signs now (one is added when not), and its Secret is published."""
        name = file_name(namespace)
        now = self.clock()

        def add_key(master: _Master) -> bool:
            data = master.files.get(name)
            keys = callbackkeys.decode(data, f"{KEYS_SECRET}/{name}") if data is not None else []
            if callbackkeys.signing(keys, now):
                return False
            master.files[name] = callbackkeys.encode([*keys, callbackkeys.new_key(now)])
            return True

        master = await self._update(add_key)
        await self.publish(namespace, master)
        self._ready.add(namespace)
        return callbackkeys.decode(master.files[name], f"{KEYS_SECRET}/{name}")

    async def rotate(self, namespace: str, request: str, overlap_s: float) -> Key:
        """Carry out rotation request `request` once: a new key, the signing ones ending `overlap_s` later."""
        name = file_name(namespace)
        now = self.clock()

        def rotate_keys(master: _Master) -> bool:
            if master.annotations.get(HANDLED + namespace) == request:
                return False  # done already (before a restart, or by the previous leader)
            data = master.files.get(name)
            keys = callbackkeys.decode(data, f"{KEYS_SECRET}/{name}") if data is not None else []
            _, kept = callbackkeys.rotated(keys, overlap_s=overlap_s, now=now)
            master.files[name] = callbackkeys.encode(kept[-MAX_KEYS:])
            master.annotations[HANDLED + namespace] = request
            return True

        master = await self._update(rotate_keys)
        keys = callbackkeys.decode(master.files[name], f"{KEYS_SECRET}/{name}")
        await self.publish(namespace, master, handled=request)
        return newest(keys)

    async def publish(
        self, namespace: str, master: _Master, *, handled: str | None = None, error: str | None = None
    ) -> None:
        """Write `namespace`'s file of `master` into its lf-callback-key (created, or replaced when it differs),
        keeping annotations others set (a pending rotation request); `handled`: the request just handled."""
        name = file_name(namespace)
        data = master.files.get(name)
        if data is None:
            return
        keys = callbackkeys.decode(data, f"{KEYS_SECRET}/{name}")
        latest = newest(keys).id if keys else ""
        for _attempt in range(CAS_ATTEMPTS):
            current = await self.kube.get("Secret", PUBLISHED_SECRET, namespace)
            meta = dict((current or {}).get("metadata") or {})
            annotations = dict(meta.get("annotations") or {})
            wanted = dict(annotations)
            wanted[KEY_ID] = latest
            if handled is not None:
                wanted[ROTATED] = handled
                if error is None:
                    wanted.pop(ROTATE_ERROR, None)
                else:
                    wanted[ROTATE_ERROR] = error
            if current is not None and wanted == annotations and set(current.get("data") or {}) == {name}:
                if _decode_data(current, name) == data:
                    return
            obj: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {
                    "name": PUBLISHED_SECRET,
                    "namespace": namespace,
                    "labels": {**(meta.get("labels") or {}), **MANAGED_LABELS},
                    "annotations": wanted,
                },
                "data": {name: _encode(data)},
            }
            try:
                if current is None:
                    await self.kube.create(obj)
                else:
                    obj["metadata"]["resourceVersion"] = meta["resourceVersion"]
                    await self.kube.replace(obj)
            except Conflict:
                continue
            log.info("callback keys of %s published (newest %s)", namespace, latest)
            return
        raise KubeError(f"Secret {namespace}/{PUBLISHED_SECRET} kept changing ({CAS_ATTEMPTS} attempts)")

    async def function_seen(self, namespace: str) -> None:
        """A Function exists in `namespace`: make sure it has a key (once per process; a failure is retried on a
        later event, not sooner than RETRY_S)."""
        if namespace in self._ready:
            return
        failed = self._failed.get(namespace)
        if failed is not None and self.clock() - failed < RETRY_S:
            return
        try:
            await self.ensure(namespace)
        except (KubeError, CallbackKeyError) as exc:
            self._failed[namespace] = self.clock()
            log.warning("callback key of namespace %s: %s (tried again in %.0f s)", namespace, exc, RETRY_S)
            return
        self._failed.pop(namespace, None)

    async def published_changed(self, kind: str, secret: Mapping[str, Any]) -> None:
        """An event of the watch on lf-callback-key: carry out a rotation request, or put back what was changed."""
        meta = secret.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        if not namespace or namespace == self.namespace:
            return
        annotations = dict(meta.get("annotations") or {})
        request = annotations.get(ROTATE, "").strip()
        master = await self._read_master()
        if file_name(namespace) not in master.files:
            return  # not a namespace of ours (no Function there yet): nothing to rotate or put back
        if kind != "DELETED" and request and request != annotations.get(ROTATED):
            try:
                check_request(request)
                overlap = parse_overlap(annotations.get(ROTATE_OVERLAP))
            except CallbackKeyError as exc:
                log.warning("rotation of %s's callback key refused: %s", namespace, exc)
                await self.publish(namespace, master, handled=request, error=str(exc))
                return
            key = await self.rotate(namespace, request, overlap)
            log.info("callback key of %s rotated: %s signs, the others for %.0f s more", namespace, key.id, overlap)
            return
        await self.publish(namespace, master)

    async def watch(self) -> None:
        """Follow every lf-callback-key (forever; the watch is made again after an error)."""
        while True:
            try:
                async for kind, secret in self.kube.client.watch(
                    Secret, namespace=ALL_NS, fields={"metadata.name": PUBLISHED_SECRET}
                ):
                    body: dict[str, Any] = secret.to_dict()
                    try:
                        await self.published_changed(kind, body)
                    except Exception as exc:  # one namespace's trouble never stops the others' events
                        ns = (body.get("metadata") or {}).get("namespace")
                        log.warning("callback key of namespace %s: %s", ns, exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the watch broke (apiserver gone, 410 Gone, RBAC): watch again
                log.warning("watching the %s Secrets: %s (again in %.0f s)", PUBLISHED_SECRET, exc, WATCH_RETRY_S)
            await asyncio.sleep(WATCH_RETRY_S)


# -- `lf callbacks key|rotate --kube`: a client with the rights of a namespace's user ---------------------------------


def _not_published(namespace: str) -> KubeError:
    return KubeError(
        f"no Secret {namespace}/{PUBLISHED_SECRET}: the operator publishes it once a Function exists in {namespace} "
        "(the chart's operator does; LF_CALLBACK_KEYS_NAMESPACE)"
    )


def _published(secret: Mapping[str, Any] | None, namespace: str) -> list[Key]:
    data = _decode_data(secret, file_name(namespace))
    if secret is None or data is None:
        raise _not_published(namespace)
    try:
        return callbackkeys.decode(data, f"Secret {namespace}/{PUBLISHED_SECRET}")
    except CallbackKeyError as exc:
        raise KubeError(str(exc)) from None


async def published_keys(kube: Kube, namespace: str) -> list[Key]:
    """`namespace`'s keys as its lf-callback-key holds them (get on that one Secret is all it takes)."""
    return _published(await kube.get("Secret", PUBLISHED_SECRET, namespace), namespace)


async def request_rotation(
    kube: Kube, namespace: str, overlap_s: float, *, timeout_s: float = 60.0, poll_s: float = 0.5
) -> tuple[Key, list[Key]]:
    """Ask the operator to rotate `namespace`'s key (annotations on its lf-callback-key: patch and get on that one
    Secret) and wait until it has; returns the new key and the namespace's keys. KubeError: refused, or not done
    within `timeout_s` (the request stays: the operator carries it out when it runs)."""
    request = callbackkeys.new_key().id  # a time stamp and 8 random hex digits
    patch = {"metadata": {"annotations": {ROTATE: request, ROTATE_OVERLAP: f"{overlap_s:g}"}}}
    try:
        await kube.client.patch(Secret, PUBLISHED_SECRET, patch, namespace=namespace, patch_type=PatchType.MERGE)
    except ApiError as exc:
        if exc.status.code == 404:
            raise _not_published(namespace) from None
        raise KubeError(f"{exc.status.code} {exc.status.reason}: {exc.status.message}") from None
    deadline = time.monotonic() + timeout_s
    while True:
        secret = await kube.get("Secret", PUBLISHED_SECRET, namespace)
        meta = (secret or {}).get("metadata") or {}
        annotations = meta.get("annotations") or {}
        if annotations.get(ROTATED) == request:
            if annotations.get(ROTATE_ERROR):
                raise KubeError(f"the operator refused the rotation: {annotations[ROTATE_ERROR]}")
            keys = _published(secret, namespace)
            fresh = next((k for k in keys if k.id == annotations.get(KEY_ID)), None) or newest(keys)
            return fresh, keys
        if time.monotonic() >= deadline:
            raise KubeError(
                f"the operator has not carried out rotation {request} within {timeout_s:g} s (is it running?); the "
                f"request stays on Secret {namespace}/{PUBLISHED_SECRET} and is carried out when it runs"
            )
        await asyncio.sleep(poll_s)
