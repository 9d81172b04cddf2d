"""lf_controlplane.images.registry without a registry: references, challenges, config.json, and the client's
requests (auth flows, HEAD-before-upload, chunking, digest checks) against a small in-memory distribution API
served through httpx.MockTransport. tests/integration/registry/ runs the same client against a real Zot."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import httpx
import pytest
from lf_controlplane.images.layers import Entry, write_layer
from lf_controlplane.images.layout import Layout, Runtime
from lf_controlplane.images.registry import (
    OCI_INDEX,
    Credentials,
    DigestError,
    Reference,
    ReferenceError,
    RegistryError,
    Transfer,
    base_url,
    credentials_from_config,
    is_loopback,
    parse_challenge,
    parse_reference,
    pull,
    push,
)

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5000/hello", Reference("127.0.0.1:5000", "hello")),
        ("127.0.0.1:5000/lf/hello:1.2", Reference("127.0.0.1:5000", "lf/hello", "1.2")),
        ("localhost/a/b/c:latest", Reference("localhost", "a/b/c", "latest")),
        (f"reg.example.com/x@{DIGEST}", Reference("reg.example.com", "x", "", DIGEST)),
        (f"reg.example.com:443/x:v1@{DIGEST}", Reference("reg.example.com:443", "x", "v1", DIGEST)),
        ("[::1]:5000/my-app_1.x:T_1", Reference("[::1]:5000", "my-app_1.x", "T_1")),
    ],
)
def test_references_parse(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hello", "no repository"),
        ("hello/world", "not a registry host"),
        ("127.0.0.1:5000/", "no repository"),
        ("127.0.0.1:5000/Hello", "not a valid repository name"),
        ("127.0.0.1:5000/a//b", "not a valid repository name"),
        ("127.0.0.1:5000/a:-bad", "not a valid tag"),
        ("127.0.0.1:5000/a@sha256:abc", "not a sha256 digest"),
        (" 127.0.0.1:5000/a", "surrounding spaces"),
        ("", "non-empty"),
    ],
)
def test_bad_references_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ReferenceError, match=message):
        parse_reference(text)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("localhost:5000", True),
        ("[::1]:5000", True),
        ("::1", True),
        ("10.0.0.1:5000", False),
        ("registry.example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    assert base_url(host).startswith("http://" if loopback else "https://")
    assert base_url(host, insecure=True).startswith("http://")


def test_challenges_parse() -> None:
    bearer = parse_challenge(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:a/b:pull,push",error="insufficient_scope"'
    )
    assert bearer.scheme == "bearer"
    assert dict(bearer.params) == {
        "realm": "https://auth.example.com/token",
        "service": "registry.example.com",
        "scope": "repository:a/b:pull,push",
        "error": "insufficient_scope",
    }
    basic = parse_challenge('Basic realm="zot \\"registry\\""')
    assert basic.scheme == "basic" and basic.params == {"realm": 'zot "registry"'}
    assert parse_challenge("Basic").params == {}
    assert parse_challenge("Bearer realm=https://x/token, service=y").params == {
        "realm": "https://x/token",
        "service": "y",
    }
    with pytest.raises(RegistryError, match="malformed WWW-Authenticate"):
        parse_challenge('Bearer realm="unterminated')


def test_credentials_from_a_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "auth.json"
    config.write_text(
        json.dumps(
            {
                "auths": {
                    "127.0.0.1:5000": {"auth": base64.b64encode(b"alice:s3:cr3t").decode()},
                    "https://reg.example.com/v2/": {"username": "bob", "password": "pw"},
                    "other:1": {"auth": base64.b64encode(b"no-colon").decode()},
                }
            }
        )
    )
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(config))
    assert credentials_from_config("127.0.0.1:5000") == Credentials("alice", "s3:cr3t")
    assert credentials_from_config("reg.example.com") == Credentials("bob", "pw")
    assert credentials_from_config("unknown:1") is None
    with pytest.raises(RegistryError, match="not base64 of user:password"):
        credentials_from_config("other:1")
    assert credentials_from_config("x:1", tmp_path / "absent.json") is None
    assert "pw" not in repr(Credentials("bob", "pw"))


# -- an in-memory distribution API --------------------------------------------------------------------------------


class FakeRegistry:
    """Enough of the distribution spec to exercise the client: blobs, uploads (monolithic and chunked),
    manifests, and basic or bearer auth."""

    def __init__(self, auth: str = "none", users: dict[str, str] | None = None) -> None:
        self.auth = auth
        self.users = users or {}
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[str, bytes]] = {}
        self.uploads: dict[str, bytearray] = {}
        self.requests: list[tuple[str, str]] = []
        self.token_scopes: list[str] = []
        self.tamper: set[str] = set()
        self.schemes: set[str] = set()

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def _user_ok(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return self.users.get(user) == password

    def _denied(self, request: httpx.Request) -> httpx.Response | None:
        header = request.headers.get("Authorization", "")
        if self.auth == "basic" and not self._user_ok(header):
            return self._error(401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": 'Basic realm="x"'})
        if self.auth == "bearer" and header != "Bearer good-token":
            challenge = 'Bearer realm="https://auth.example.com/token",service="fake"'
            return self._error(401, "UNAUTHORIZED", "token required", {"WWW-Authenticate": challenge})
        return None

    @staticmethod
    def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.Response(status, json={"errors": [{"code": code, "message": message}]}, headers=headers)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        self.schemes.add(f"{request.url.scheme}://{request.url.host}")
        if request.url.host == "auth.example.com":
            if not self._user_ok(request.headers.get("Authorization", "")):
                return self._error(401, "UNAUTHORIZED", "bad credentials")
            self.token_scopes.append(f"{request.url.params['service']} {request.url.params['scope']}")
            return httpx.Response(200, json={"token": "good-token"})
        denied = self._denied(request)
        if denied is not None:
            return denied
        path = request.url.path
        if path == "/v2/":
            return httpx.Response(200, json={})
        match = re.fullmatch(r"/v2/(.+)/(blobs|manifests)/(uploads/?|[^/]+)(?:/?)([^/]*)", path)
        assert match is not None, path
        kind, what = match.group(2), match.group(3)
        if kind == "blobs" and what.startswith("uploads"):
            return self._upload(request)
        if kind == "blobs":
            if what not in self.blobs:
                return self._error(404, "BLOB_UNKNOWN", "blob unknown")
            data = self.blobs[what] + (b"x" if what in self.tamper else b"")
            return httpx.Response(200, content=b"" if request.method == "HEAD" else data)
        if request.method == "PUT":
            body = request.read()
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            self.manifests[what] = self.manifests[digest] = (request.headers["Content-Type"], body)
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        if what not in self.manifests:
            return self._error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        media_type, body = self.manifests[what]
        return httpx.Response(200, content=body, headers={"Content-Type": media_type})

    def _upload(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            session = f"s{len(self.uploads)}"
            self.uploads[session] = bytearray()
            return httpx.Response(202, headers={"Location": f"/v2/up/blobs/uploads/{session}"})
        session = request.url.path.rsplit("/", 1)[1]
        data = self.uploads[session]
        chunk = request.read()
        if request.method == "PATCH":
            start, _, end = request.headers["Content-Range"].partition("-")
            assert int(start) == len(data) and int(end) == len(data) + len(chunk) - 1
            data += chunk
            return httpx.Response(202, headers={"Location": f"/v2/up/blobs/uploads/{session}?state=1"})
        data += chunk
        digest = request.url.params["digest"]
        if "sha256:" + hashlib.sha256(bytes(data)).hexdigest() != digest:
            return self._error(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
        self.blobs[digest] = bytes(data)
        return httpx.Response(201, headers={"Location": f"/v2/x/blobs/{digest}"})


def image_layout(root: Path, payload: bytes = b"hello\n" * 1000) -> Layout:
    layout = Layout.create(root)
    layers = [
        write_layer([Entry("etc/os-release", data=b"ID=debian\n")], layout.blobs),
        write_layer([Entry("function/data.bin", data=payload)], layout.blobs),
    ]
    layout.write_image("hello:1", base=None, layers=layers, runtime=Runtime(cmd=("/bin/true",)), history=["t"])
    return layout


def test_push_then_pull_round_trips_and_skips_what_is_there(tmp_path: Path) -> None:
    registry = FakeRegistry()
    layout = image_layout(tmp_path / "src")
    first = Transfer([], [])
    digest = push(layout, "hello:1", "127.0.0.1:5000/lf/hello:1", transport=registry.transport(), transfer=first)
    assert digest == layout.find("hello:1").digest
    image = layout.image("hello:1")
    config = json.loads(layout.read_blob(image.manifest))["config"]["digest"]
    assert sorted(first.uploaded) == sorted([config, *(d.digest for d in image.layers)])
    assert set(registry.blobs) == set(first.uploaded)
    registry.requests.clear()
    second = Transfer([], [])
    assert (
        push(layout, "hello:1", "127.0.0.1:5000/lf/hello:1", transport=registry.transport(), transfer=second) == digest
    )
    assert second.uploaded == [] and len(second.skipped) == 3
    assert not [r for r in registry.requests if r[0] in ("POST", "PATCH")]
    out = Layout.create(tmp_path / "out")
    assert pull("127.0.0.1:5000/lf/hello:1", out, "copy", transport=registry.transport()) == digest
    assert pull(f"127.0.0.1:5000/lf/hello@{digest}", out, "by-digest", transport=registry.transport()) == digest
    for descriptor in (image.manifest, *image.layers):
        assert out.read_blob(descriptor) == layout.read_blob(descriptor)
    assert out.image("copy").diff_ids == image.diff_ids


def test_big_blobs_go_up_in_chunks(tmp_path: Path) -> None:
    registry = FakeRegistry()
    layout = image_layout(
        tmp_path / "src", payload=b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(2000))
    )
    push(layout, "hello:1", "127.0.0.1:5000/big", chunk_size=1000, transport=registry.transport())
    patches = [r for r in registry.requests if r[0] == "PATCH"]
    image = layout.image("hello:1")
    config_size = json.loads(layout.read_blob(image.manifest))["config"]["size"]
    sizes = [config_size, *(d.size for d in image.layers)]
    assert max(sizes) > 10_000  # hash output does not compress: many chunks
    assert len(patches) == sum(-(-size // 1000) for size in sizes if size > 1000)
    for digest, data in registry.blobs.items():
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest


def test_an_untagged_target_is_pushed_by_digest(tmp_path: Path) -> None:
    registry = FakeRegistry()
    layout = image_layout(tmp_path / "src")
    digest = push(layout, "hello:1", "127.0.0.1:5000/lf/hello", transport=registry.transport())
    assert ("PUT", f"/v2/lf/hello/manifests/{digest}") in registry.requests
    with pytest.raises(ReferenceError, match="names digest"):
        push(layout, "hello:1", f"127.0.0.1:5000/lf/hello@{DIGEST}", transport=registry.transport())


def test_basic_auth(tmp_path: Path) -> None:
    registry = FakeRegistry("basic", {"alice": "pw"})
    layout = image_layout(tmp_path / "src")
    push(layout, "hello:1", "127.0.0.1:5000/a:1", Credentials("alice", "pw"), transport=registry.transport())
    with pytest.raises(RegistryError) as wrong:
        push(layout, "hello:1", "127.0.0.1:5000/a:1", Credentials("alice", "nope"), transport=registry.transport())
    assert (wrong.value.status, wrong.value.code) == (401, "UNAUTHORIZED")
    assert "401 UNAUTHORIZED" in str(wrong.value)
    with pytest.raises(RegistryError, match="requires credentials"):
        pull("127.0.0.1:5000/a:1", Layout.create(tmp_path / "o"), "x", transport=registry.transport())


def test_bearer_token_flow(tmp_path: Path) -> None:
    registry = FakeRegistry("bearer", {"alice": "pw"})
    layout = image_layout(tmp_path / "src")
    creds = Credentials("alice", "pw")
    digest = push(layout, "hello:1", "reg.example.com/team/app:1", creds, transport=registry.transport())
    assert registry.token_scopes[0] == "fake repository:team/app:pull,push"
    assert registry.schemes == {"https://reg.example.com", "https://auth.example.com"}
    out = Layout.create(tmp_path / "out")
    assert pull("reg.example.com/team/app:1", out, "x", creds, transport=registry.transport()) == digest
    assert registry.token_scopes[-1] == "fake repository:team/app:pull"
    with pytest.raises(RegistryError) as wrong:
        pull("reg.example.com/team/app:1", out, "x", Credentials("alice", "bad"), transport=registry.transport())
    assert (wrong.value.status, wrong.value.code) == (401, "UNAUTHORIZED")


def test_a_plain_http_realm_off_loopback_gets_no_credentials(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.host != "auth.example.com", "credentials were sent to a plain-http realm"
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="http://auth.example.com/t"'})

    with pytest.raises(RegistryError, match="plain-http realm"):
        pull(
            "reg.example.com/a:1",
            Layout.create(tmp_path / "o"),
            "x",
            Credentials("a", "b"),
            transport=httpx.MockTransport(handler),
        )


def test_a_tampered_blob_is_refused_and_not_kept(tmp_path: Path) -> None:
    registry = FakeRegistry()
    layout = image_layout(tmp_path / "src")
    push(layout, "hello:1", "127.0.0.1:5000/a:1", transport=registry.transport())
    victim = layout.image("hello:1").layers[1].digest
    registry.tamper.add(victim)
    out = Layout.create(tmp_path / "out")
    with pytest.raises(DigestError, match=victim) as error:
        pull("127.0.0.1:5000/a:1", out, "x", transport=registry.transport())
    assert error.value.code == "DIGEST_INVALID"
    assert not out.blob_path(victim).exists()
    assert not list(out.blobs.glob(".*partial"))
    assert out.manifests() == []


def test_a_manifest_that_is_not_the_digest_asked_for_is_refused(tmp_path: Path) -> None:
    registry = FakeRegistry()
    layout = image_layout(tmp_path / "src")
    digest = push(layout, "hello:1", "127.0.0.1:5000/a:1", transport=registry.transport())
    media_type, body = registry.manifests[digest]
    registry.manifests[digest] = (media_type, body + b" ")
    with pytest.raises(DigestError, match=f"not {digest}"):
        pull(f"127.0.0.1:5000/a@{digest}", Layout.create(tmp_path / "out"), "x", transport=registry.transport())


def test_registry_errors_carry_status_code_and_message(tmp_path: Path) -> None:
    registry = FakeRegistry()
    with pytest.raises(RegistryError) as error:
        pull("127.0.0.1:5000/absent:1", Layout.create(tmp_path / "o"), "x", transport=registry.transport())
    assert (error.value.status, error.value.code) == (404, "MANIFEST_UNKNOWN")
    assert "manifest unknown" in str(error.value) and "/v2/absent/manifests/1" in str(error.value)


def test_a_damaged_layout_is_not_pushed(tmp_path: Path) -> None:
    registry = FakeRegistry()
    layout = image_layout(tmp_path / "src")
    victim = layout.image("hello:1").layers[0]
    layout.blob_path(victim.digest).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="does not match its digest or size"):
        push(layout, "hello:1", "127.0.0.1:5000/a:1", transport=registry.transport())
    assert victim.digest not in registry.blobs


def test_an_unreachable_registry_is_a_registry_error(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(RegistryError, match="connection refused") as error:
        pull("127.0.0.1:1/a:1", Layout.create(tmp_path / "o"), "x", transport=httpx.MockTransport(refuse))
    assert error.value.status == 0


def test_a_bare_error_object_is_read_too(tmp_path: Path) -> None:
    """Zot's 401 body is one {"code", "message"} object rather than the spec's {"errors": [...]}."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            return httpx.Response(200)
        return httpx.Response(403, json={"code": "DENIED", "message": "not for you"})

    with pytest.raises(RegistryError) as error:
        pull("127.0.0.1:5000/a:1", Layout.create(tmp_path / "o"), "x", transport=httpx.MockTransport(handler))
    assert (error.value.status, error.value.code) == (403, "DENIED")
    assert "not for you" in str(error.value)


def test_an_index_goes_up_and_comes_back_with_its_manifests(tmp_path: Path) -> None:
    registry = FakeRegistry()
    layout = image_layout(tmp_path / "src")
    image = layout.find("hello:1")
    child = {**image.to_json(), "platform": {"architecture": "amd64", "os": "linux"}}
    del child["annotations"]
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [child]}).encode()
    layout.tag("multi", layout.put_bytes(OCI_INDEX, body))
    digest = push(layout, "multi", "127.0.0.1:5000/m:1", transport=registry.transport())
    assert ("PUT", f"/v2/m/manifests/{image.digest}") in registry.requests
    assert ("PUT", "/v2/m/manifests/1") in registry.requests
    out = Layout.create(tmp_path / "out")
    assert pull("127.0.0.1:5000/m:1", out, "multi", transport=registry.transport()) == digest
    assert out.find("multi").media_type == OCI_INDEX
    assert out.read_blob(image) == layout.read_blob(image)
    for descriptor in layout.image("hello:1").layers:
        assert out.read_blob(descriptor) == layout.read_blob(descriptor)
