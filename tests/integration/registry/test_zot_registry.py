"""lf_controlplane.images.registry against a real Zot (htpasswd auth over loopback http): what it pushes comes back
byte for byte, skopeo reads the same manifest, a second push sends no blob, and wrong credentials, a tampered blob
and a missing image fail with the registry's status and code."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import httpx
import pytest
from lf_controlplane.images.layers import Entry, write_layer
from lf_controlplane.images.layout import Layout, Runtime
from lf_controlplane.images.registry import Credentials, DigestError, RegistryError, Transfer, pull, push

from tools.registry.tokens import TokenServer
from tools.registry.zot import Zot

pytestmark = pytest.mark.integration


class Recording(httpx.HTTPTransport):
    """The real transport, remembering every request's method and path."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        return super().handle_request(request)


def incompressible(size: int, seed: bytes) -> bytes:
    blocks = (hashlib.sha256(seed + i.to_bytes(8, "big")).digest() for i in range(-(-size // 32)))
    return b"".join(blocks)[:size]


def image_layout(root: Path, seed: bytes, payload_size: int = 200_000) -> Layout:
    """A two-layer image (a base layer and a code layer), tagged `app`, as lf_controlplane.images writes it."""
    layout = Layout.create(root)
    base = write_layer([Entry("etc/os-release", data=b"ID=debian\n"), Entry("tmp", "dir", 0o1777)], layout.blobs)
    layout.write_image("base", base=None, layers=[base], runtime=Runtime(env=("PATH=/usr/bin",)))
    code = write_layer(
        [
            Entry("function/handler.py", data=b"def handle(req):\n    return 'hi'\n", uid=65532, gid=65532),
            Entry("function/data.bin", data=incompressible(payload_size, seed), uid=65532, gid=65532),
        ],
        layout.blobs,
    )
    runtime = Runtime(entrypoint=("python", "-m", "lf_runtime"), user="65532:65532", workdir="/function")
    layout.write_image("app", base=layout.image("base"), layers=[code], runtime=runtime)
    return layout


def creds(zot: Zot) -> Credentials:
    return Credentials(*zot.credentials)


def skopeo(*argv: str) -> str:
    done = subprocess.run(["skopeo", *argv], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"skopeo {' '.join(argv)} failed ({done.returncode}): {done.stderr}"
    return done.stdout


def all_blobs(layout: Layout, ref: str) -> list[str]:
    image = layout.image(ref)
    config = json.loads(layout.read_blob(image.manifest))["config"]["digest"]
    return [image.manifest.digest, config, *(d.digest for d in image.layers)]


def test_push_then_pull_gives_back_the_same_bytes(zot: Zot, tmp_path: Path) -> None:
    layout = image_layout(tmp_path / "src", b"round-trip")
    digest = push(layout, "app", f"{zot.address}/lf/round-trip:v1", creds(zot))
    assert digest == layout.find("app").digest
    for source in (f"{zot.address}/lf/round-trip:v1", f"{zot.address}/lf/round-trip@{digest}"):
        out = Layout.create(tmp_path / source.rsplit("/", 1)[1].replace(":", "-").replace("@", "-"))
        assert pull(source, out, "copy", creds(zot)) == digest
        for blob in all_blobs(layout, "app"):
            assert out.blob_path(blob).read_bytes() == layout.blob_path(blob).read_bytes(), blob
        assert out.image("copy").runtime == layout.image("app").runtime


def test_skopeo_reads_what_was_pushed(zot: Zot, tmp_path: Path) -> None:
    layout = image_layout(tmp_path / "src", b"skopeo")
    digest = push(layout, "app", f"{zot.address}/lf/skopeo:v1", creds(zot))
    user, password = zot.credentials
    remote = f"docker://{zot.address}/lf/skopeo:v1"
    inspected = json.loads(skopeo("inspect", "--tls-verify=false", "--creds", f"{user}:{password}", remote))
    assert inspected["Digest"] == digest
    assert inspected["Layers"] == [d.digest for d in layout.image("app").layers]
    raw = skopeo("inspect", "--raw", "--tls-verify=false", "--authfile", str(zot.auth_file), remote)
    assert raw.encode() == layout.read_blob(layout.find("app"))


def test_an_image_skopeo_pushed_pulls_back(zot: Zot, tmp_path: Path) -> None:
    layout = image_layout(tmp_path / "src", b"skopeo-push")
    skopeo(
        "copy", "--dest-tls-verify=false", "--authfile", str(zot.auth_file),
        f"oci:{layout.root}:app", f"docker://{zot.address}/lf/from-skopeo:v1",
    )  # fmt: skip
    out = Layout.create(tmp_path / "out")
    assert pull(f"{zot.address}/lf/from-skopeo:v1", out, "app", creds(zot)) == layout.find("app").digest


def test_a_second_push_sends_no_blob(zot: Zot, tmp_path: Path) -> None:
    layout = image_layout(tmp_path / "src", b"twice")
    target = f"{zot.address}/lf/twice:v1"
    first, first_moved = Recording(), Transfer([], [])
    digest = push(layout, "app", target, creds(zot), transport=first, transfer=first_moved)
    assert sorted(first_moved.uploaded) == sorted(all_blobs(layout, "app")[1:])
    assert ("POST", "/v2/lf/twice/blobs/uploads/") in first.requests
    second, second_moved = Recording(), Transfer([], [])
    assert push(layout, "app", target, creds(zot), transport=second, transfer=second_moved) == digest
    assert second_moved.uploaded == []
    assert [r for r in second.requests if r[0] in ("POST", "PATCH")] == []
    assert [r for r in second.requests if r[0] == "PUT"] == [("PUT", "/v2/lf/twice/manifests/v1")]


def test_chunked_uploads(zot: Zot, tmp_path: Path) -> None:
    layout = image_layout(tmp_path / "src", b"chunked", payload_size=300_000)
    transport = Recording()
    digest = push(layout, "app", f"{zot.address}/lf/chunked:v1", creds(zot), chunk_size=64 * 1024, transport=transport)
    biggest = max(d.size for d in layout.image("app").layers)
    patches = [r for r in transport.requests if r[0] == "PATCH"]
    assert len(patches) == -(-biggest // (64 * 1024))
    out = Layout.create(tmp_path / "out")
    assert pull(f"{zot.address}/lf/chunked:v1", out, "app", creds(zot)) == digest
    for blob in all_blobs(layout, "app"):
        assert out.blob_path(blob).read_bytes() == layout.blob_path(blob).read_bytes()


def test_a_wrong_password_is_a_401(zot: Zot, tmp_path: Path) -> None:
    layout = image_layout(tmp_path / "src", b"denied", payload_size=10)
    with pytest.raises(RegistryError) as error:
        push(layout, "app", f"{zot.address}/lf/denied:v1", Credentials(zot.user, "not-the-password"))
    assert error.value.status == 401
    assert error.value.code == "UNAUTHORIZED"
    assert "401 UNAUTHORIZED" in str(error.value)


def test_no_credentials_is_refused_before_anything_is_sent(
    zot: Zot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "absent.json"))
    with pytest.raises(RegistryError, match="requires credentials") as error:
        pull(f"{zot.address}/lf/anything:v1", Layout.create(tmp_path / "out"), "x")
    assert error.value.status == 401


def test_credentials_come_from_the_auth_file(zot: Zot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = image_layout(tmp_path / "src", b"authfile", payload_size=10)
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(zot.auth_file))
    digest = push(layout, "app", f"{zot.address}/lf/authfile:v1")
    assert pull(f"{zot.address}/lf/authfile:v1", Layout.create(tmp_path / "out"), "app") == digest


def test_a_tampered_blob_is_refused_on_pull(zot: Zot, tmp_path: Path) -> None:
    layout = image_layout(tmp_path / "src", b"tampered")
    push(layout, "app", f"{zot.address}/lf/tampered:v1", creds(zot))
    victim = layout.image("app").layers[-1].digest
    stored = zot.storage / "lf" / "tampered" / "blobs" / "sha256" / victim.removeprefix("sha256:")
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    stored.write_bytes(bytes(data))
    out = Layout.create(tmp_path / "out")
    with pytest.raises(DigestError, match=f"blob {victim} arrived as .* with digest sha256:") as error:
        pull(f"{zot.address}/lf/tampered:v1", out, "app", creds(zot))
    assert error.value.code == "DIGEST_INVALID"
    assert not out.blob_path(victim).exists()
    assert out.manifests() == []


def test_a_missing_image_names_the_registry_code(zot: Zot, tmp_path: Path) -> None:
    layout = image_layout(tmp_path / "src", b"missing", payload_size=10)
    push(layout, "app", f"{zot.address}/lf/missing:v1", creds(zot))
    with pytest.raises(RegistryError) as error:
        pull(f"{zot.address}/lf/missing:v2", Layout.create(tmp_path / "out"), "x", creds(zot))
    assert (error.value.status, error.value.code) == (404, "MANIFEST_UNKNOWN")


def test_the_token_flow(token_zot: tuple[Zot, TokenServer], tmp_path: Path) -> None:
    zot, tokens = token_zot
    layout = image_layout(tmp_path / "src", b"bearer")
    anonymous = httpx.get(f"{zot.url}/v2/")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith(f'Bearer realm="{tokens.realm}"')
    digest = push(layout, "app", f"{zot.address}/lf/bearer:v1", creds(zot))
    assert tokens.issued[-1] == (zot.user, ["repository:lf/bearer:pull,push"])
    out = Layout.create(tmp_path / "out")
    assert pull(f"{zot.address}/lf/bearer:v1", out, "app", creds(zot)) == digest
    assert tokens.issued[-1] == (zot.user, ["repository:lf/bearer:pull"])
    for blob in all_blobs(layout, "app"):
        assert out.blob_path(blob).read_bytes() == layout.blob_path(blob).read_bytes()
    with pytest.raises(RegistryError) as error:
        pull(f"{zot.address}/lf/bearer:v1", Layout.create(tmp_path / "o2"), "x", Credentials(zot.user, "wrong"))
    assert (error.value.status, error.value.code) == (401, "UNAUTHORIZED")
    assert error.value.url.startswith(tokens.realm)


def test_a_token_for_pulling_cannot_push(token_zot: tuple[Zot, TokenServer], tmp_path: Path) -> None:
    """Zot enforces the token's scope: the client's pull-only client is refused a push (403 or 401, DENIED or
    UNAUTHORIZED), which is what makes the scope the client asks for matter."""
    zot, tokens = token_zot
    token = tokens.token(zot.user, ["repository:lf/scoped:pull"])
    started = httpx.post(f"{zot.url}/v2/lf/scoped/blobs/uploads/", headers={"Authorization": f"Bearer {token}"})
    assert started.status_code in (401, 403), started.text
