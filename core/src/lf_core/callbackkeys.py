"""Callback signing keys: one JSON file per namespace, shared by the dispatcher (which signs) and `lf callbacks`
(which prints and rotates). docs/operations.md, "Signed callbacks".

The directory is `LF_CALLBACK_KEYS_DIR`: under `lf dev` `.lf/callback-keys/` of the dev root (keys are created
there on first need, files 0600), on Kubernetes a mounted Secret (read-only; kubelet swaps its files in place, so a
file is re-read when its inode, size or mtime changes). The file `{namespace}.json`:

    {"keys": [{"id": "20261207T211500-1a2b3c4d", "secret": "<64 hex>", "created": "2026-12-07T21:15:00Z",
               "notAfter": "2026-12-08T21:15:00Z"}, ...]}

A key signs from `created` until `notAfter` (absent: no end). The HMAC key is the `secret` string's ASCII bytes.
`rotate` adds a new key and ends every key that signs now `overlap` later: during the overlap each callback
carries one signature per signing key, so a receiver holding the old or the new key verifies it.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from lf_core.contract.names import InvalidName, check_name

SUFFIX = ".json"
SECRET_BYTES = 32
DEFAULT_OVERLAP_S = 24 * 3600.0


class CallbackKeyError(ValueError):
    """A key file that cannot be used (the message names the file and the problem)."""


class NoSigningKey(LookupError):  # noqa: N818 (a refusal, named for what is missing)
    """No key signs for the namespace now (and none could be created): the callback is not sent."""


class _KeyJson(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True, omit_defaults=True):
    id: str
    secret: str
    created: str
    not_after: str | None = None


class _FileJson(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    keys: list[_KeyJson]


_decoder = msgspec.json.Decoder(_FileJson)


@dataclass(frozen=True)
class Key:
    id: str
    secret: str
    created: float
    """Seconds since the epoch."""
    not_after: float | None = None

    def signs_at(self, now: float) -> bool:
        return self.created <= now and (self.not_after is None or now < self.not_after)

    @property
    def hmac_key(self) -> bytes:
        return self.secret.encode("ascii")


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds(value: str, what: str) -> float:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CallbackKeyError(f"{what}: {value!r} is not an RFC 3339 time (e.g. 2026-12-07T21:15:00Z)") from None
    if moment.tzinfo is None:
        raise CallbackKeyError(f"{what}: {value!r} has no time zone (write it in UTC with a Z)")
    return moment.timestamp()


def path_for(directory: Path, namespace: str) -> Path:
    try:
        return directory / f"{check_name(namespace, 'namespace')}{SUFFIX}"
    except InvalidName as exc:
        raise CallbackKeyError(str(exc)) from None


def decode(data: bytes, where: str = "key file") -> list[Key]:
    try:
        parsed = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise CallbackKeyError(f"{where}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise CallbackKeyError(f"{where}: not JSON ({exc})") from None
    keys = []
    for i, raw in enumerate(parsed.keys):
        what = f"{where}: keys[{i}]"
        if not raw.id or not raw.id.isascii() or any(c.isspace() or c in ",=" for c in raw.id):
            raise CallbackKeyError(f"{what}.id: {raw.id!r} must be non-empty ASCII without spaces, ',' or '='")
        if len(raw.secret) < 32 or not raw.secret.isascii():
            raise CallbackKeyError(f"{what}.secret: must be at least 32 ASCII characters")
        created = _seconds(raw.created, f"{what}.created")
        not_after = _seconds(raw.not_after, f"{what}.notAfter") if raw.not_after is not None else None
        keys.append(Key(raw.id, raw.secret, created, not_after))
    if len({key.id for key in keys}) != len(keys):
        raise CallbackKeyError(f"{where}: two keys have the same id")
    return keys


def encode(keys: list[Key]) -> bytes:
    out = _FileJson(
        keys=[
            _KeyJson(
                id=k.id, secret=k.secret, created=rfc3339(k.created),
                not_after=rfc3339(k.not_after) if k.not_after is not None else None,
            )
            for k in keys
        ]
    )  # fmt: skip
    return msgspec.json.format(msgspec.json.encode(out), indent=2) + b"\n"


def read(path: Path) -> list[Key]:
    """The keys in a file; [] when it does not exist."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CallbackKeyError(f"{path}: cannot read ({exc.strerror})") from None
    return decode(data, str(path))


def write(path: Path, keys: list[Key], *, exclusive: bool = False) -> None:
    """Write the file atomically (a 0600 temporary file renamed over it); `exclusive`: only if none exists.

    Raises:
        FileExistsError: `exclusive` and the file exists (someone else created it first: read theirs).
        OSError: the directory is not writable.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(encode(keys))
            out.flush()
            os.fsync(out.fileno())
        if exclusive:
            os.link(tmp, path)  # fails if the file exists, unlike a rename
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def new_key(now: float | None = None) -> Key:
    now = time.time() if now is None else now
    stamp = datetime.fromtimestamp(int(now), UTC).strftime("%Y%m%dT%H%M%S")
    return Key(id=f"{stamp}-{secrets.token_hex(4)}", secret=secrets.token_hex(SECRET_BYTES), created=float(int(now)))


def signing(keys: list[Key], now: float) -> list[Key]:
    """The keys that sign at `now`, newest first (of two created in the same second, the later in the file)."""
    ranked = sorted(enumerate(keys), key=lambda pair: (pair[1].created, pair[0]), reverse=True)
    return [key for _, key in ranked if key.signs_at(now)]


def rotated(
    keys: list[Key], *, overlap_s: float = DEFAULT_OVERLAP_S, now: float | None = None
) -> tuple[Key, list[Key]]:
    """`keys` after a rotation (pure; `rotate` writes it): a new key is added, every key that signs now stops
    `overlap_s` later (sooner if it was to end sooner), keys that no longer sign are dropped. Returns the new key
    and the list."""
    if overlap_s < 0:
        raise CallbackKeyError(f"overlap must not be negative, got {overlap_s:g} s")
    now = time.time() if now is None else now
    end = now + overlap_s
    kept = []
    for key in keys:
        if not key.signs_at(now) and key.created <= now:
            continue  # ended: nobody verifies with it any more
        not_after = end if key.not_after is None else min(key.not_after, end)
        kept.append(Key(key.id, key.secret, key.created, not_after))
    fresh = new_key(now)
    return fresh, [*kept, fresh]


def rotate(path: Path, *, overlap_s: float = DEFAULT_OVERLAP_S, now: float | None = None) -> tuple[Key, list[Key]]:
    """Rotate the file's keys (`rotated`) and write them. Returns the new key and the file's keys."""
    fresh, keys = rotated(read(path), overlap_s=overlap_s, now=now)
    write(path, keys)
    return fresh, keys


def ensure(path: Path, now: float | None = None) -> list[Key]:
    """The file's keys, creating the file with one new key when it has none that signs (lf dev)."""
    now = time.time() if now is None else now
    keys = read(path)
    if signing(keys, now):
        return keys
    if keys:  # all ended (or not yet begun): add one, keep the others for the record
        keys = [*keys, new_key(now)]
        write(path, keys)
        return keys
    try:
        write(path, [new_key(now)], exclusive=True)
    except FileExistsError:
        pass  # created meanwhile by another process: theirs counts
    return read(path)


@dataclass
class _Cached:
    stamp: tuple[int, int, int]
    keys: list[Key]


@dataclass
class KeyRing:
    """The directory's keys, re-read when a file changes (cheap: one stat per lookup).

    `create`: make a key for a namespace that has none the first time one is needed, when the directory is
    writable (lf dev). A read-only directory (a mounted Secret) never gets one: the lookup fails instead.
    `directory` None (LF_CALLBACK_KEYS_DIR unset): no namespace has a key.
    """

    directory: Path | None
    create: bool = True
    _cache: dict[str, _Cached] = field(default_factory=dict)

    def signing_keys(self, namespace: str, now: float | None = None) -> list[Key]:
        """The keys that sign for `namespace` now, newest first (never empty).

        Raises:
            NoSigningKey: none (the message says why; it goes into the call's record).
        """
        now = time.time() if now is None else now
        if self.directory is None:
            raise NoSigningKey(f"no signing key for namespace {namespace} (LF_CALLBACK_KEYS_DIR is not set)")
        try:
            path = path_for(self.directory, namespace)
        except CallbackKeyError as exc:
            raise NoSigningKey(f"no signing key for namespace {namespace!r}: {exc}") from None
        keys = signing(self._load(namespace, path), now)
        if not keys and self.create and self._writable():
            try:
                keys = signing(ensure(path, now), now)
            except (OSError, CallbackKeyError) as exc:
                raise NoSigningKey(f"no signing key for namespace {namespace} (creating one failed: {exc})") from None
            self._cache.pop(namespace, None)
        if not keys:
            raise NoSigningKey(f"no signing key for namespace {namespace}")
        return keys

    def _writable(self) -> bool:
        assert self.directory is not None
        if self.directory.is_dir():
            return os.access(self.directory, os.W_OK)
        parent = self.directory.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        return os.access(parent, os.W_OK)

    def _load(self, namespace: str, path: Path) -> list[Key]:
        try:
            st = path.stat()
        except FileNotFoundError:
            self._cache.pop(namespace, None)
            return []
        except OSError as exc:
            raise NoSigningKey(f"no signing key for namespace {namespace} ({path}: {exc.strerror})") from None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self._cache.get(namespace)
        if cached is not None and cached.stamp == stamp:
            return cached.keys
        try:
            keys = read(path)
        except CallbackKeyError as exc:
            raise NoSigningKey(f"no signing key for namespace {namespace} ({exc})") from None
        self._cache[namespace] = _Cached(stamp, keys)
        return keys
