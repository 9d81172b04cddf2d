"""A small OCI distribution client: push an image of an OCI layout to a registry, pull one back into a layout.

The platform pushes the images it builds with this (`lf deploy`, `make images`) so a user's machine needs no
skopeo. It speaks the distribution spec's HTTP API (https://github.com/opencontainers/distribution-spec):

- push: every blob (config, layers; the child manifests of an index) is checked with HEAD and uploaded only when the
  registry lacks it — in one PUT when it is at most `chunk_size` bytes, else in PATCH chunks — then the manifest is
  PUT by tag (or by digest when the target names none). The manifest digest the registry answers must be ours.
- pull: the manifest (by tag or `@sha256:…`) and every blob it names are fetched into the layout, each one hashed
  while it is written; a digest or size that differs from the one asked for is a `DigestError` and nothing of it is
  kept.
- auth: none, HTTP basic, or the token flow (`WWW-Authenticate: Bearer realm=…,service=…,scope=…`): the client asks
  `/v2/` which one the registry wants, then fetches a token for the repository's scope from the realm (with the
  credentials, when there are any) and refreshes it once when the registry answers 401 later.
- transport: plain http only to a loopback registry or with `insecure=True`; https (certificates verified)
  otherwise.

Credentials, when not given, come from a docker-style `config.json` (`$REGISTRY_AUTH_FILE`, else
`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`): its `auths` entry for the registry's host, as `auth`
(base64 `user:password`) or `username`/`password`. Credential helpers (`credsStore`) are not run.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from lf_controlplane.images.layout import Descriptor, Layout, LayoutError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)

DEFAULT_CHUNK_SIZE = 32 << 20
"""Blobs larger than this go up in PATCH chunks of this size; smaller ones in a single PUT."""
MAX_MANIFEST_BYTES = 4 << 20
"""The distribution spec lets a registry refuse manifests above 4 MiB; we refuse to read bigger ones too."""
_READ = 1 << 20

# The distribution spec's grammar for repository names and tags, and the digests we accept (sha256 only: the
# layouts we write use nothing else).
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]{1,5})?")


class RegistryError(RuntimeError):
    """A registry refused a request, answered something malformed, or could not be reached.

    `status` is the HTTP status (0 when there was no answer), `code` the first error code of the registry's error
    body (`UNAUTHORIZED`, `MANIFEST_UNKNOWN`, …; `""` when it sent none), `message` its message."""

    def __init__(self, message: str, *, status: int = 0, code: str = "", url: str = "") -> None:
        self.status = status
        self.code = code
        self.message = message
        self.url = url
        parts = [f"{url}:" if url else "", str(status) if status else "", code, message]
        super().__init__(" ".join(part for part in parts if part))


class DigestError(RegistryError):
    """Content whose sha256 digest or size is not the one it was asked for (or announced) under."""


class ReferenceError(ValueError):
    """An image reference that is not `host[:port]/repository[:tag][@sha256:…]` (the message says why)."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<hidden>)"

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


@dataclass(frozen=True)
class Reference:
    """`registry/repository[:tag][@digest]`; at least one of tag and digest is set after `parse_reference`
    unless the reference names neither (then `tag` is empty and so is `digest`)."""

    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @property
    def target(self) -> str:
        """What the manifest endpoint is addressed by: the digest when there is one, else the tag."""
        return self.digest or self.tag

    def __str__(self) -> str:
        return (
            f"{self.registry}/{self.repository}"
            + (f":{self.tag}" if self.tag else "")
            + (f"@{self.digest}" if self.digest else "")
        )


def parse_reference(text: str) -> Reference:
    """Parse `host[:port]/repository[:tag][@sha256:…]`. The registry host is required (no implicit Docker Hub):
    the first path component is the host."""
    if not text or text != text.strip():
        raise ReferenceError(f"{text!r}: an image reference must be non-empty and without surrounding spaces")
    rest, at, digest = text.partition("@")
    if at and not _DIGEST.fullmatch(digest):
        raise ReferenceError(f"{text!r}: {digest!r} is not a sha256 digest (sha256: and 64 lowercase hex digits)")
    host, slash, path = rest.partition("/")
    if not slash or not path:
        raise ReferenceError(f"{text!r}: no repository; expected host[:port]/repository[:tag]")
    if not _HOST.fullmatch(host) or not ("." in host or ":" in host or host == "localhost"):
        raise ReferenceError(f"{text!r}: {host!r} is not a registry host (a name with a dot or a port, or localhost)")
    repository, _, tag = path.rpartition(":") if ":" in path else (path, "", "")
    if tag and not _TAG.fullmatch(tag):
        raise ReferenceError(f"{text!r}: {tag!r} is not a valid tag ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})")
    if not _REPOSITORY.fullmatch(repository):
        raise ReferenceError(
            f"{text!r}: {repository!r} is not a valid repository name (lowercase components separated by /)"
        )
    return Reference(host, repository, tag, digest)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (with or without a port; IPv6 in brackets)."""
    name = host
    if name.startswith("["):
        name = name[1 : name.find("]")]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def base_url(registry: str, *, insecure: bool = False) -> str:
    """The registry's URL root: http:// for loopback or `insecure`, https:// otherwise."""
    scheme = "http" if insecure or is_loopback(registry) else "https"
    return f"{scheme}://{registry}"


# -- WWW-Authenticate ---------------------------------------------------------------------------------------------

_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,|$)')


@dataclass(frozen=True)
class Challenge:
    scheme: str
    """Lowercased: `basic` or `bearer` (others are kept, and refused later)."""
    params: Mapping[str, str]


def parse_challenge(header: str) -> Challenge:
    """Parse one `WWW-Authenticate` value, e.g. `Bearer realm="https://a/token",service="reg",scope="x:y:pull"`."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        raise RegistryError(f"empty WWW-Authenticate header {header!r}", status=401)
    params: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _PARAM.match(rest, position)
        if match is None or match.end() == position:
            raise RegistryError(f"malformed WWW-Authenticate header {header!r}", status=401)
        quoted, bare = match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare or ""
        params[match.group(1).lower()] = value
        position = match.end()
    return Challenge(scheme.lower(), params)


# -- docker-style config.json -------------------------------------------------------------------------------------


def auth_file() -> Path:
    """Where credentials are read from: $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json, ~/.docker/config.json."""
    if os.environ.get("REGISTRY_AUTH_FILE"):
        return Path(os.environ["REGISTRY_AUTH_FILE"])
    if os.environ.get("DOCKER_CONFIG"):
        return Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    return Path.home() / ".docker" / "config.json"


def credentials_from_config(registry: str, path: Path | None = None) -> Credentials | None:
    """The credentials a docker-style config.json holds for `registry` (`host[:port]`), or None."""
    path = path if path is not None else auth_file()
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RegistryError(f"cannot read registry credentials from {path}: {exc}") from None
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return None
    for key, entry in auths.items():
        name = re.sub(r"^https?://", "", str(key)).rstrip("/").removesuffix("/v1").removesuffix("/v2")
        if name != registry or not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, colon, password = base64.b64decode(str(entry["auth"]), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise RegistryError(f"{path}: the auth of {key!r} is not base64 of user:password") from None
            if not colon:
                raise RegistryError(f"{path}: the auth of {key!r} is not base64 of user:password")
            return Credentials(user, password)
        if entry.get("username"):
            return Credentials(str(entry["username"]), str(entry.get("password", "")))
    return None


# -- the client ---------------------------------------------------------------------------------------------------

Body = Callable[[], bytes | Iterable[bytes]]
"""Makes a request body afresh (so a request can be sent again after the client re-authenticates)."""


def _error_from(response: httpx.Response, what: str) -> RegistryError:
    code, message = "", ""
    try:
        body = json.loads(response.read())
        # the spec's {"errors": [{"code", "message", "detail"}]}; Zot's 401 sends one bare {"code", "message"}
        first = (body.get("errors") or [{}])[0] if "errors" in body else body
        code, message = str(first.get("code", "")), str(first.get("message", ""))
    except (ValueError, AttributeError, IndexError, TypeError, httpx.HTTPError):
        pass
    if not message:
        message = response.reason_phrase or "request failed"
    cls = DigestError if code in ("DIGEST_INVALID", "SIZE_INVALID") else RegistryError
    return cls(f"{what}: {message}", status=response.status_code, code=code, url=str(response.request.url))


def _sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class Client:
    """One repository of one registry, authenticated for `actions` (`pull`, or `pull,push`)."""

    def __init__(
        self,
        ref: Reference,
        credentials: Credentials | None,
        *,
        actions: str,
        insecure: bool = False,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.ref = ref
        self.credentials = credentials
        self.actions = actions
        self.insecure = insecure
        self.root = base_url(ref.registry, insecure=insecure)
        self._http = httpx.Client(transport=transport, timeout=timeout, follow_redirects=True)
        self._authorization: str | None = None
        self._challenge: Challenge | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def url(self, path: str) -> str:
        return f"{self.root}/v2/{self.ref.repository}/{path}"

    # -- auth -----------------------------------------------------------------------------------------------------

    def _authorize(self, challenge: Challenge) -> None:
        """Set the Authorization header a 401's challenge asks for (fetching a token for the bearer flow)."""
        self._challenge = challenge
        if challenge.scheme == "basic":
            if self.credentials is None:
                raise RegistryError(
                    f"{self.ref.registry} requires credentials (basic auth) and none were given",
                    status=401,
                    code="UNAUTHORIZED",
                )
            self._authorization = self.credentials.basic()
        elif challenge.scheme == "bearer":
            self._authorization = "Bearer " + self._token(challenge)
        else:
            raise RegistryError(
                f"{self.ref.registry} asks for unsupported auth scheme {challenge.scheme!r}", status=401
            )

    def _token(self, challenge: Challenge) -> str:
        realm = challenge.params.get("realm", "")
        if not realm:
            raise RegistryError(f"{self.ref.registry}: a Bearer challenge without a realm", status=401)
        realm = str(httpx.URL(self.root + "/").join(realm))
        realm_host = httpx.URL(realm).netloc.decode()
        if realm.startswith("http://") and not (self.insecure or is_loopback(realm_host)):
            raise RegistryError(f"{self.ref.registry}: refusing to send credentials to a plain-http realm {realm}")
        scope = f"repository:{self.ref.repository}:{self.actions}"
        params = {"scope": scope}
        if challenge.params.get("service"):
            params["service"] = challenge.params["service"]
        headers = {"Authorization": self.credentials.basic()} if self.credentials else {}
        try:
            response = self._http.get(realm, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise RegistryError(f"token request to {realm} failed: {exc}", url=realm) from None
        if response.status_code != 200:
            raise _error_from(response, f"token request for {scope}")
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"token response from {realm} holds no token", status=response.status_code, url=realm)
        return token

    def ping(self) -> None:
        """GET /v2/ and authenticate as its challenge asks (nothing to do when it answers 200)."""
        response = self._send("GET", f"{self.root}/v2/", reauthorize=False)
        if response.status_code == 401:
            self._authorize(self._challenge_of(response))
            response = self._send("GET", f"{self.root}/v2/", reauthorize=False)
            if self._challenge is not None and self._challenge.scheme == "bearer" and response.status_code == 401:
                # a token for a repository scope need not open /v2/ itself; the repository's requests decide
                return
        if response.status_code != 200:
            raise _error_from(response, "GET /v2/")

    @staticmethod
    def _challenge_of(response: httpx.Response) -> Challenge:
        header = response.headers.get("WWW-Authenticate")
        if not header:
            raise _error_from(response, "unauthorized, and no WWW-Authenticate challenge")
        return parse_challenge(header)

    # -- requests -------------------------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Body | None = None,
        stream: bool = False,
        reauthorize: bool = True,
    ) -> httpx.Response:
        """Send a request with the current authorization; on a 401 re-authenticate once and send it again."""
        for attempt in (0, 1):
            all_headers = dict(headers or {})
            if self._authorization:
                all_headers["Authorization"] = self._authorization
            request = self._http.build_request(
                method, url, headers=all_headers, content=body() if body is not None else None
            )
            try:
                response = self._http.send(request, stream=stream)
            except httpx.HTTPError as exc:
                raise RegistryError(f"{method} failed: {exc}", url=url) from None
            if response.status_code != 401 or not reauthorize or attempt == 1:
                return response
            challenge = self._challenge_of(response)
            if challenge.scheme == "basic" and (self._authorization or "").startswith("Basic "):
                return response  # the credentials were sent and refused: asking again would not help
            response.close()
            self._authorize(challenge)
        raise AssertionError("unreachable")

    def _checked(self, response: httpx.Response, expected: tuple[int, ...], what: str) -> httpx.Response:
        if response.status_code not in expected:
            error = _error_from(response, what)
            response.close()
            raise error
        return response

    # -- blobs ----------------------------------------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        response = self._send("HEAD", self.url(f"blobs/{digest}"))
        if response.status_code == 404:
            return False
        self._checked(response, (200,), f"HEAD blob {digest}")
        return True

    def _location(self, response: httpx.Response, what: str) -> str:
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"{what}: the registry sent no Location", status=response.status_code)
        return str(response.request.url.join(location))

    @staticmethod
    def _with_digest(location: str, digest: str) -> str:
        return f"{location}{'&' if '?' in location else '?'}digest={digest}"

    def upload_blob(self, path: Path, digest: str, size: int, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        """Upload the file `path` as blob `digest` (monolithic up to `chunk_size` bytes, else chunked)."""
        started = self._checked(
            self._send("POST", self.url("blobs/uploads/")), (202,), f"starting the upload of {digest}"
        )
        location = self._location(started, f"starting the upload of {digest}")
        octets = {"Content-Type": "application/octet-stream"}
        if size <= chunk_size:
            response = self._send(
                "PUT",
                self._with_digest(location, digest),
                headers={**octets, "Content-Length": str(size)},
                body=lambda: _file_chunks(path, 0, size),
            )
            self._checked(response, (201,), f"uploading blob {digest}")
            return
        offset = 0
        while offset < size:
            length = min(chunk_size, size - offset)
            first = offset
            response = self._send(
                "PATCH",
                location,
                headers={
                    **octets,
                    "Content-Length": str(length),
                    "Content-Range": f"{first}-{first + length - 1}",
                },
                body=functools.partial(_file_chunks, path, first, length),
            )
            self._checked(response, (202,), f"uploading bytes {first}-{first + length - 1} of blob {digest}")
            location = self._location(response, f"uploading blob {digest}")
            offset += length
        response = self._send("PUT", self._with_digest(location, digest), headers={"Content-Length": "0"})
        self._checked(response, (201,), f"closing the upload of blob {digest}")

    def fetch_blob(self, digest: str, size: int | None, layout: Layout) -> None:
        """GET blob `digest` into `layout`, hashing it as it is written; kept only when digest and size match."""
        target = layout.blob_path(digest)
        partial = target.with_name(f".{target.name}.partial")
        response = self._checked(
            self._send("GET", self.url(f"blobs/{digest}"), stream=True), (200,), f"GET blob {digest}"
        )
        hasher = hashlib.sha256()
        written = 0
        try:
            with partial.open("wb") as out:
                for chunk in response.iter_bytes(_READ):
                    hasher.update(chunk)
                    written += len(chunk)
                    if size is not None and written > size:
                        break
                    out.write(chunk)
        except httpx.HTTPError as exc:
            partial.unlink(missing_ok=True)
            raise RegistryError(f"GET blob {digest} failed: {exc}", url=str(response.request.url)) from None
        finally:
            response.close()
        got = f"sha256:{hasher.hexdigest()}"
        if got != digest or (size is not None and written != size):
            partial.unlink(missing_ok=True)
            raise DigestError(
                f"blob {digest} arrived as {written} bytes with digest {got}"
                + (f" (expected {size} bytes)" if size is not None else ""),
                status=response.status_code,
                code="DIGEST_INVALID",
                url=str(response.request.url),
            )
        partial.replace(target)

    # -- manifests ------------------------------------------------------------------------------------------------

    def put_manifest(self, reference: str, media_type: str, body: bytes) -> str:
        response = self._send(
            "PUT", self.url(f"manifests/{reference}"), headers={"Content-Type": media_type}, body=lambda: body
        )
        self._checked(response, (201,), f"PUT manifest {self.ref.repository}:{reference}")
        ours = _sha256(body)
        theirs = response.headers.get("Docker-Content-Digest")
        if theirs and theirs != ours:
            raise DigestError(
                f"the registry stored manifest {ours} as {theirs}", status=201, code="DIGEST_INVALID",
                url=str(response.request.url),
            )  # fmt: skip
        return ours

    def get_manifest(self, reference: str) -> tuple[str, bytes]:
        """The manifest's media type and bytes; its digest checked against `reference` (when a digest) and the
        registry's Docker-Content-Digest."""
        response = self._send("GET", self.url(f"manifests/{reference}"), headers={"Accept": ", ".join(MANIFEST_TYPES)})
        self._checked(response, (200,), f"GET manifest {self.ref.repository}:{reference}")
        body = response.content
        if len(body) > MAX_MANIFEST_BYTES:
            raise RegistryError(f"manifest {reference} is {len(body)} bytes, above the 4 MiB limit", status=200)
        digest = _sha256(body)
        announced = response.headers.get("Docker-Content-Digest")
        for expected in (reference if _DIGEST.fullmatch(reference) else None, announced):
            if expected and expected != digest:
                raise DigestError(
                    f"manifest {reference} has digest {digest}, not {expected}", status=200, code="DIGEST_INVALID",
                    url=str(response.request.url),
                )  # fmt: skip
        media_type = response.headers.get("Content-Type", "").partition(";")[0].strip()
        try:
            declared = json.loads(body).get("mediaType")
        except (ValueError, AttributeError):
            raise RegistryError(f"manifest {reference} is not JSON", status=200) from None
        media_type = declared or media_type
        if media_type not in MANIFEST_TYPES:
            raise RegistryError(f"manifest {reference} has unsupported media type {media_type!r}", status=200)
        return media_type, body


def _file_chunks(path: Path, offset: int, length: int) -> Iterator[bytes]:
    with path.open("rb") as source:
        source.seek(offset)
        left = length
        while left > 0:
            chunk = source.read(min(_READ, left))
            if not chunk:
                raise RegistryError(f"{path} ended {left} bytes early")
            left -= len(chunk)
            yield chunk


def _verified_blob_file(layout: Layout, descriptor: Descriptor) -> Path:
    """The blob's file, after checking its size and digest (so a damaged layout is never pushed)."""
    path = layout.blob_path(descriptor.digest)
    hasher = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as source:
            while chunk := source.read(_READ):
                hasher.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        raise LayoutError(f"{layout.root}: blob {descriptor.digest} is missing") from None
    if f"sha256:{hasher.hexdigest()}" != descriptor.digest or size != descriptor.size:
        raise LayoutError(f"{layout.root}: blob {descriptor.digest} does not match its digest or size")
    return path


def _children(media_type: str, body: bytes) -> tuple[list[Descriptor], list[Descriptor]]:
    """(child manifests, blobs) a manifest or index names."""
    try:
        data: dict[str, Any] = json.loads(body)
    except ValueError:
        raise LayoutError(f"a {media_type} that is not JSON") from None
    if media_type in INDEX_TYPES:
        return [Descriptor.from_json(item) for item in data.get("manifests", [])], []
    if "config" not in data:
        raise LayoutError(f"a {media_type} without a config")
    blobs = [Descriptor.from_json(data["config"]), *(Descriptor.from_json(item) for item in data.get("layers", []))]
    return [], blobs


@dataclass
class Transfer:
    """What a push or pull moved (for logs and tests): blobs sent or fetched, and those skipped as present."""

    uploaded: list[str]
    skipped: list[str]


def _push_manifest(
    client: Client, layout: Layout, descriptor: Descriptor, reference: str, chunk_size: int, transfer: Transfer
) -> str:
    body = layout.read_blob(descriptor)
    children, blobs = _children(descriptor.media_type, body)
    for child in children:
        _push_manifest(client, layout, child, child.digest, chunk_size, transfer)
    for blob in blobs:
        if blob.digest in transfer.uploaded or blob.digest in transfer.skipped:
            continue
        path = _verified_blob_file(layout, blob)
        if client.has_blob(blob.digest):
            transfer.skipped.append(blob.digest)
            continue
        client.upload_blob(path, blob.digest, blob.size, chunk_size=chunk_size)
        transfer.uploaded.append(blob.digest)
    return client.put_manifest(reference, descriptor.media_type, body)


def push(
    layout: Layout,
    ref: str,
    target: str,
    credentials: Credentials | None = None,
    *,
    insecure: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    transport: httpx.BaseTransport | None = None,
    transfer: Transfer | None = None,
) -> str:
    """Push the image tagged `ref` in `layout` to `target` (`host[:port]/repo[:tag]`) and return its manifest
    digest. Blobs the registry has are not sent. Credentials default to the docker-style config.json's."""
    destination = parse_reference(target)
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, not {chunk_size}")
    manifest = layout.find(ref)
    if destination.digest and destination.digest != manifest.digest:
        raise ReferenceError(f"{target!r} names digest {destination.digest}, but {ref!r} is {manifest.digest}")
    if credentials is None:
        credentials = credentials_from_config(destination.registry)
    moved = transfer if transfer is not None else Transfer([], [])
    with Client(destination, credentials, actions="pull,push", insecure=insecure, transport=transport) as client:
        client.ping()
        return _push_manifest(client, layout, manifest, destination.tag or manifest.digest, chunk_size, moved)


def _pull_manifest(client: Client, layout: Layout, reference: str, transfer: Transfer) -> Descriptor:
    media_type, body = client.get_manifest(reference)
    children, blobs = _children(media_type, body)
    for child in children:
        _pull_manifest(client, layout, child.digest, transfer)
    for blob in blobs:
        if layout.blob_path(blob.digest).exists():
            transfer.skipped.append(blob.digest)
            continue
        client.fetch_blob(blob.digest, blob.size, layout)
        transfer.uploaded.append(blob.digest)
    return layout.put_bytes(media_type, body)


def pull(
    source: str,
    layout: Layout,
    ref: str,
    credentials: Credentials | None = None,
    *,
    insecure: bool = False,
    transport: httpx.BaseTransport | None = None,
    transfer: Transfer | None = None,
) -> str:
    """Fetch the image `source` (`host[:port]/repo[:tag|@sha256:…]`) into `layout`, tag it `ref` there and return
    its manifest digest. Every manifest and blob is checked against its digest before it is kept."""
    origin = parse_reference(source)
    if credentials is None:
        credentials = credentials_from_config(origin.registry)
    moved = transfer if transfer is not None else Transfer([], [])
    with Client(origin, credentials, actions="pull", insecure=insecure, transport=transport) as client:
        client.ping()
        manifest = _pull_manifest(client, layout, origin.target or "latest", moved)
    layout.tag(ref, manifest)
    return manifest.digest
