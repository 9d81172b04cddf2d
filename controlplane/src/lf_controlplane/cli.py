"""The `lf` command line: thin typer commands over the control plane's modules."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from enum import StrEnum
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import msgspec
import typer
import uvloop
import yaml
from lf_core.contract.names import DEFAULT_NAMESPACE, InvalidName, check_name
from rich.console import Console
from rich.table import Table

from lf_controlplane import deploying, scaffolding
from lf_controlplane.deadletters import dlq_app
from lf_controlplane.dev import state
from lf_controlplane.dev.platform import DevPlatform, DevSettings, StartupError
from lf_controlplane.operator.kube import Kube, KubeError
from lf_controlplane.triggerscmd import trigger_app, triggers_app
from lf_controlplane.urls import function_url

T = TypeVar("T")

app = typer.Typer(help="LiteFunctions: serverless functions on a throughput-first data plane.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(triggers_app, name="triggers")
app.add_typer(trigger_app, name="trigger")
console = Console()
errors = Console(stderr=True)

DEFAULT_STATE_DIR = Path(".lf")


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise typer.BadParameter(f"{name}={raw!r} is not a whole number") from None


def _fail(message: str, code: int = 1) -> typer.Exit:
    errors.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


@app.command()
def dev(
    root: Annotated[Path, typer.Argument(help="Folder of function folders (each with a function.yaml).")] = Path(),
    host: Annotated[str, typer.Option(envvar="LF_HOST", help="Address the ingestor listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="LF_PORT", help="Port the ingestor listens on.")] = 8080,
    state_dir: Annotated[Path, typer.Option(envvar="LF_STATE_DIR", help="Broker data, venvs, state.")] = (
        DEFAULT_STATE_DIR
    ),
    secrets_dir: Annotated[
        Path | None, typer.Option(envvar="LF_SECRETS_SOURCE", help="Where secrets are read (default ROOT/.secrets).")
    ] = None,
    nats_url: Annotated[
        str | None, typer.Option(envvar="LF_NATS_URL", help="Use this broker instead of starting one.")
    ] = None,
    workers: Annotated[int, typer.Option(envvar="LF_WORKERS", help="Ingestor worker processes.")] = 1,
    reload: Annotated[bool, typer.Option(help="Reload a function when its files change.")] = True,
    admin_port: Annotated[
        int, typer.Option(envvar="LF_ADMIN_PORT", help="Port of the ingestor's /metrics (default: a free one).")
    ] = 0,
) -> None:
    """Run the platform locally: broker, ingestor and every function under ROOT, reloaded on change."""
    if not root.is_dir():
        raise _fail(f"{root} is not a folder")
    settings = DevSettings(
        root=root.resolve(),
        host=host,
        port=port,
        state_dir=state_dir.resolve(),
        secrets_dir=secrets_dir,
        nats_url=nats_url,
        workers=workers,
        reload=reload,
        admin_port=admin_port,
    )
    existing = state.read(settings.state_dir)
    if existing is not None:
        raise _fail(f"lf dev (pid {existing.pid}) already runs with state in {settings.state_dir}")
    try:
        uvloop.run(DevPlatform(settings).run())
    except StartupError as exc:
        raise _fail(str(exc)) from None


@app.command()
def new(
    name: Annotated[str, typer.Argument(help="Function name (a DNS-1123 label).")],
    runtime: Annotated[str, typer.Option(help="Language of the function.")] = "python",
    parent: Annotated[Path, typer.Option("--dir", help="Where to create the folder.")] = Path(),
) -> None:
    """Create a function folder NAME/ with function.yaml and a handler."""
    try:
        folder = scaffolding.scaffold(name, parent, runtime)
    except (InvalidName, scaffolding.ScaffoldError) as exc:
        raise _fail(str(exc)) from None
    console.print(f"created {folder}/ (function.yaml, handler.py); run it with [bold]lf dev {parent}[/bold]")


def _base_url(url: str | None, state_dir: Path) -> str:
    if url:
        return url
    running = state.read(state_dir)
    if running is not None:
        return running.base_url
    port = _env_int("LF_PORT", 8080)
    return f"http://{os.environ.get('LF_HOST', '127.0.0.1')}:{port}"


def _parse_header(raw: str) -> tuple[str, str]:
    name, sep, value = raw.partition(":")
    if not sep or not name.strip():
        raise typer.BadParameter(f"header {raw!r} must look like 'Name: value'")
    return name.strip(), value.strip()


@app.command()
def invoke(
    name: Annotated[str, typer.Argument(help="Function name.")],
    data: Annotated[
        str | None, typer.Option("--data", "-d", help="Request body; '@file' reads a file, '-' stdin.")
    ] = None,
    method: Annotated[str | None, typer.Option("--method", "-X", help="HTTP method (POST with --data).")] = None,
    path: Annotated[str, typer.Option(help="Path after the function, e.g. /items/1?x=2.")] = "",
    header: Annotated[list[str] | None, typer.Option("--header", "-H", help="'Name: value', repeatable.")] = None,
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = DEFAULT_NAMESPACE,
    url: Annotated[
        str | None, typer.Option(envvar="LF_URL", help="Ingestor URL (default: the running lf dev).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 70.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show status and headers.")] = False,
    state_dir: Annotated[Path, typer.Option(envvar="LF_STATE_DIR", hidden=True)] = DEFAULT_STATE_DIR,
) -> None:
    """Call a function and print its answer; exits 1 when the status is 400 or above."""
    try:
        check_name(name)
        check_name(namespace, "namespace")
    except InvalidName as exc:
        raise _fail(str(exc)) from None
    body = _read_body(data)
    target = function_url(_base_url(url, state_dir), namespace, name) + (
        path if not path or path[0] in "/?" else f"/{path}"
    )
    headers = [_parse_header(h) for h in header or []]
    try:
        response = httpx.request(
            method or ("POST" if body is not None else "GET"), target, content=body, headers=headers, timeout=timeout
        )
    except httpx.TransportError as exc:
        raise _fail(f"cannot reach {target}: {exc} (is `lf dev` running?)") from None
    if verbose:
        errors.print(f"{response.status_code} {response.reason_phrase}")
        for key, value in response.headers.multi_items():
            errors.print(f"{key}: {value}")
    sys.stdout.buffer.write(response.content)
    sys.stdout.flush()
    if response.status_code >= 400:
        raise typer.Exit(1)


def _read_body(data: str | None) -> bytes | None:
    if data is None:
        return None
    if data == "-":
        return sys.stdin.buffer.read()
    if data.startswith("@"):
        try:
            return Path(data[1:]).read_bytes()
        except OSError as exc:
            raise _fail(f"cannot read {data[1:]}: {exc.strerror}") from None
    return data.encode()


@app.command("list")
def list_functions(
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.table,
    state_dir: Annotated[Path, typer.Option(envvar="LF_STATE_DIR")] = DEFAULT_STATE_DIR,
    cluster: Annotated[
        bool, typer.Option("--cluster", help="List the Functions of the kube context even when lf dev runs here.")
    ] = False,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Cluster namespace.")] = None,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A")] = False,
    context: Annotated[str | None, typer.Option(help="Kube context (default: the current one).")] = None,
) -> None:
    """Show functions: those of the `lf dev` running with STATE_DIR, otherwise (or with --cluster) the
    Functions in the current kube context."""
    current = None if cluster else state.read(state_dir.resolve())
    if current is None:
        if not cluster and (namespace is None and not all_namespaces and context is None) and not _has_kubeconfig():
            raise _fail(f"no lf dev is running with state in {state_dir.resolve()} and no kube context is configured")
        _list_cluster(output, namespace, all_namespaces, context)
        return
    if output is Output.json:
        console.print_json(msgspec.json.encode(current.functions).decode())
        return
    if output is Output.yaml:
        sys.stdout.write(yaml.safe_dump(msgspec.to_builtins(current.functions), sort_keys=False))
        return
    table = Table("NAME", "NAMESPACE", "STATE", "READY", "RESTARTS", "URL / ERROR")
    for fn in current.functions:
        table.add_row(
            fn.name, fn.namespace, fn.state, f"{fn.ready}/{fn.replicas}", str(fn.restarts), fn.error or fn.url or ""
        )
    console.print(table)


def _has_kubeconfig() -> bool:
    paths = os.environ.get("KUBECONFIG", "")
    candidates = [Path(p) for p in paths.split(os.pathsep) if p] or [Path.home() / ".kube" / "config"]
    return any(p.is_file() for p in candidates) or "KUBERNETES_SERVICE_HOST" in os.environ


def _cluster_call(context: str | None, work: Callable[[Kube], Awaitable[T]]) -> T:
    """Run `work` with a client of the kube context; API errors become a clean exit 1."""

    async def run() -> T:
        try:
            kube = Kube.connect(context=context, field_manager=deploying.FIELD_MANAGER)
        except Exception as exc:  # lightkube raises ConfigError and friends for a missing or bad kubeconfig
            raise _fail(f"no usable kube context: {exc}") from None
        try:
            return await work(kube)
        finally:
            await kube.close()

    try:
        return asyncio.run(run())
    except (KubeError, deploying.DeployError) as exc:
        raise _fail(str(exc)) from None
    except httpx.TransportError as exc:
        raise _fail(f"cannot reach the cluster: {exc}") from None


def _list_cluster(output: Output, namespace: str | None, all_namespaces: bool, context: str | None) -> None:
    async def work(kube: Kube) -> list[dict[str, Any]]:
        return await kube.list("Function", "*" if all_namespaces else namespace or kube.namespace)

    rows = deploying.rows(_cluster_call(context, work))
    if output is Output.json:
        console.print_json(json.dumps(rows))
    elif output is Output.yaml:
        sys.stdout.write(deploying.dump_yaml(rows))
    else:
        table = Table("NAME", "NAMESPACE", "RUNTIME", "PHASE", "READY", "URL")
        for row in rows:
            ready = f"{row['ready']}/{row['replicas']}"
            table.add_row(row["name"], row["namespace"], row["runtime"], row["phase"], ready, row["url"])
        console.print(table)


def _registry_target(
    registry: str | None, creds: Path | None, base: str | None, insecure: bool
) -> deploying.RegistryTarget | None:
    if not registry:
        if creds or base:
            raise _fail("--registry-creds and --base-image are for --registry (or LF_REGISTRY)")
        return None
    try:
        credentials = deploying.read_credentials(creds, registry) if creds else None
    except deploying.DeployError as exc:
        raise _fail(str(exc)) from None
    return deploying.RegistryTarget(registry, credentials, base, insecure)


@app.command()
def deploy(
    folder: Annotated[Path, typer.Argument(help="Function folder (with function.yaml).")] = Path(),
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Default: the manifest's, then the context's.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the complete manifest, apply nothing (an image is still pushed).")
    ] = False,
    output: Annotated[Output | None, typer.Option("--output", "-o", help="yaml or json (with --dry-run).")] = None,
    wait: Annotated[bool, typer.Option(help="Wait until the Function is Ready.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for Ready.")] = 180.0,
    context: Annotated[str | None, typer.Option(help="Kube context (default: the current one).")] = None,
    registry: Annotated[
        str | None,
        typer.Option(envvar="LF_REGISTRY", help="HOST:PORT: build the function's image, push it there, deploy it."),
    ] = None,
    registry_creds: Annotated[
        Path | None,
        typer.Option(
            envvar="LF_REGISTRY_CREDS",
            help="File with user:password (or a docker config.json); default: ~/.docker/config.json's entry.",
        ),
    ] = None,
    base_image: Annotated[
        str | None,
        typer.Option(
            envvar="LF_BASE_IMAGE",
            help="Runtime base (REGISTRY/REPO[:TAG|@DIGEST] or oci:DIR:REF); "
            "default: REGISTRY/litefunctions/runtime-<runtime>:" + deploying.function_images.BASE_TAG,
        ),
    ] = None,
    insecure_registry: Annotated[bool, typer.Option(help="Plain http to a registry that is not on loopback.")] = False,
) -> None:
    """Deploy a function folder to the cluster of the kube context: with --registry, as an image built here and
    pushed (dependencies included); without, its code inline in the manifest (Python without dependencies)."""
    target = _registry_target(registry, registry_creds, base_image, insecure_registry)

    async def complete(manifest: dict[str, Any]) -> dict[str, Any]:
        if target is None:
            return manifest
        with errors.status("building the image") as progress:
            return await deploying.with_image(manifest, folder, target, lambda line: progress.update(line[-120:]))

    if dry_run:
        try:
            manifest = deploying.manifest_of(folder, namespace, DEFAULT_NAMESPACE, inline=target is None)
            manifest = asyncio.run(complete(manifest))
        except deploying.DeployError as exc:
            raise _fail(str(exc)) from None
        if output is Output.json:
            sys.stdout.write(json.dumps(manifest, indent=2) + "\n")
        else:
            sys.stdout.write(deploying.dump_yaml(manifest))
        return

    async def work(kube: Kube) -> dict[str, Any]:
        manifest = await complete(deploying.manifest_of(folder, namespace, kube.namespace, inline=target is None))
        name, ns = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
        stored = await kube.apply(manifest)
        errors.print(f"function {name} applied in {ns} (generation {stored['metadata'].get('generation')})")
        if not wait:
            return stored
        with errors.status(f"waiting for {name} to be ready") as progress:
            return await deploying.wait_ready(kube, name, ns, timeout, lambda line: progress.update(f"{name}: {line}"))

    stored = _cluster_call(context, work)
    url = (stored.get("status") or {}).get("url", "")
    if output is Output.json:
        sys.stdout.write(json.dumps(stored, indent=2) + "\n")
    elif output is Output.yaml:
        sys.stdout.write(deploying.dump_yaml(stored))
    elif wait:
        console.print(f"{stored['metadata']['name']} is ready: {url}")


@app.command()
def describe(
    name: Annotated[str, typer.Argument(help="Function name.")],
    namespace: Annotated[str | None, typer.Option("--namespace", "-n")] = None,
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.yaml,
    context: Annotated[str | None, typer.Option(help="Kube context (default: the current one).")] = None,
) -> None:
    """Show a Function of the cluster: spec (code as file names), status and conditions."""

    async def work(kube: Kube) -> dict[str, Any] | None:
        return await kube.get("Function", name, namespace or kube.namespace)

    found = _cluster_call(context, work)
    if found is None:
        raise _fail(f"function {name} not found")
    shown = deploying.describe(found)
    if output is Output.json:
        console.print_json(json.dumps(shown))
    else:
        sys.stdout.write(deploying.dump_yaml(shown))


@app.command()
def delete(
    name: Annotated[str, typer.Argument(help="Function name.")],
    namespace: Annotated[str | None, typer.Option("--namespace", "-n")] = None,
    context: Annotated[str | None, typer.Option(help="Kube context (default: the current one).")] = None,
) -> None:
    """Delete a Function of the cluster (the operator removes its route; its children go with it)."""

    async def work(kube: Kube) -> bool:
        return await kube.delete("Function", name, namespace or kube.namespace)

    if not _cluster_call(context, work):
        raise _fail(f"function {name} not found")
    console.print(f"function {name} deleted")


@app.command()
def operator(
    namespace: Annotated[
        list[str] | None, typer.Option("--namespace", "-n", help="Watch only these namespaces (default: all).")
    ] = None,
    liveness: Annotated[
        str | None, typer.Option(envvar="LF_OPERATOR_LIVENESS", help="e.g. http://0.0.0.0:8080/healthz")
    ] = None,
) -> None:
    """Run the Kubernetes operator (kopf, standalone): Functions and Triggers → Deployments and routes. With
    LF_LEADER_ELECTION=true, replicas elect one leader on a Lease and only it reconciles (operator/leader.py)."""
    import kopf

    import lf_controlplane.operator.handlers  # noqa: F401 (registers the handlers)
    from lf_controlplane.operator import leader
    from lf_controlplane.operator.config import OperatorConfig

    try:
        OperatorConfig.from_env()  # a malformed setting stops here, not in a retried startup handler
        election = leader.ElectionConfig.from_env()
    except ValueError as exc:
        raise _fail(str(exc)) from None
    kopf.configure(verbose=os.environ.get("LF_LOG_LEVEL", "") == "debug")
    settings = kopf.OperatorSettings()
    # -n: the given namespaces only. Without this kopf first tries to list namespaces, which the chart's RBAC does not
    # grant, and retries for about a minute before it serves anything.
    settings.scanning.disabled = bool(namespace)
    if election is None:
        kopf.run(
            standalone=True,
            clusterwide=not namespace,
            namespaces=namespace or (),
            liveness_endpoint=liveness,
            settings=settings,
        )
        return

    async def lead(stop_flag: asyncio.Event) -> None:
        await kopf.operator(
            standalone=True,
            clusterwide=not namespace,
            namespaces=namespace or (),
            liveness_endpoint=liveness,
            stop_flag=stop_flag,
            settings=settings,
        )

    async def elected() -> int:
        kube = Kube.connect()
        try:
            return await leader.run_elected(election, kube, lead, liveness=liveness)
        finally:
            await kube.close()

    code = asyncio.run(elected())
    if code:
        raise _fail(f"stopped leading on {election.namespace}/{election.lease_name} (see the log above)", code)


@app.command()
def dispatcher(
    nats_url: Annotated[str | None, typer.Option(envvar="LF_NATS_URL", help="The broker.")] = None,
    admin_port: Annotated[
        int | None, typer.Option(envvar="LF_ADMIN_PORT", help="Port of the dispatcher's /metrics (0: none).")
    ] = None,
) -> None:
    """Run the dispatcher (`python -m lf_dispatcher`): it pulls every function's async calls, invokes them, records
    results, retries, dead-letters and calls back. Several may run at once. Its other settings are LF_* variables
    (docs/operations.md, "The dispatcher"). The control plane starts it as a process and never imports it."""
    import importlib.util

    if importlib.util.find_spec("lf_dispatcher") is None:
        raise _fail("the dispatcher is not installed here (the lf-dispatcher package)")
    env = dict(os.environ)
    if nats_url:
        env["LF_NATS_URL"] = nats_url
    if admin_port is not None:
        env["LF_ADMIN_PORT"] = str(admin_port)
    argv = [sys.executable, "-m", "lf_dispatcher"]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)  # noqa: S606 (our own interpreter; SIGTERM reaches the dispatcher itself)


@app.command()
def logs(
    name: Annotated[str, typer.Argument(help="Function name, or name.namespace.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new output.")] = False,
    call: Annotated[str | None, typer.Option("--call", help="Only this call's output (its X-Call-Id).")] = None,
    nats_url: Annotated[
        str | None, typer.Option(envvar="LF_NATS_URL", help="Broker URL (default: the running lf dev's).")
    ] = None,
    state_dir: Annotated[Path, typer.Option(envvar="LF_STATE_DIR", help="lf dev's state folder.")] = (
        DEFAULT_STATE_DIR
    ),
) -> None:
    """Print what a function wrote to stdout/stderr, call by call (from the LF_LOGS stream)."""
    from lf_controlplane.logscmd import read_logs

    function, _, namespace = name.partition(".")
    namespace = namespace or DEFAULT_NAMESPACE
    try:
        check_name(function)
        check_name(namespace)
    except InvalidName as exc:
        raise _fail(str(exc), 2) from None
    url = nats_url
    if not url:
        running = state.read(state_dir.resolve())
        url = running.nats_url if running is not None and running.nats_url else "nats://127.0.0.1:4222"
    try:
        shown = uvloop.run(read_logs(url, namespace, function, follow=follow, call_id=call))
    except KeyboardInterrupt:
        return
    except Exception as exc:
        raise _fail(f"cannot read logs from {url}: {exc}") from None
    if shown == 0 and call is not None:
        raise _fail(f"no output of call {call} in {function}.{namespace}'s logs", 1)


@app.command()
def version() -> None:
    """Print the versions of the CLI and the native core."""
    import lf_native

    console.print(
        f"lf {package_version('lf-controlplane')} (native {lf_native.__version__}, {lf_native.build_profile})"
    )


# -- lf callbacks: the keys callbacks are signed with ---------------------------------------------------------------

callbacks_app = typer.Typer(
    help="Signed callbacks: the keys a receiver verifies Lf-Signature with (docs/operations.md).", no_args_is_help=True
)
app.add_typer(callbacks_app, name="callbacks")

KeysDir = Annotated[
    Path | None,
    typer.Option(
        "--dir", envvar="LF_CALLBACK_KEYS_DIR", help="The keys folder (default: lf dev's, STATE_DIR/callback-keys)."
    ),
]
StateDir = Annotated[Path, typer.Option(envvar="LF_STATE_DIR", help="lf dev's state folder.")]
InCluster = Annotated[
    bool,
    typer.Option(
        "--kube",
        help="The cluster's keys: the namespace's Secret lf-callback-key, kept by the operator (current kube context).",
    ),
]


def _keys_path(namespace: str, keys_dir: Path | None, state_dir: Path) -> Path:
    from lf_core import callbackkeys

    try:
        return callbackkeys.path_for(keys_dir or state_dir / "callback-keys", namespace)
    except callbackkeys.CallbackKeyError as exc:
        raise _fail(str(exc), 2) from None


@callbacks_app.command("key")
def callbacks_key(
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = DEFAULT_NAMESPACE,
    keys_dir: KeysDir = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.table,
    in_cluster: InCluster = False,
) -> None:
    """Print the key(s) that sign the namespace's callbacks now, for a receiver to verify with (two during a
    rotation's overlap: accept either). Under lf dev a namespace without one gets one."""
    from lf_core import callbackkeys

    if in_cluster:
        import time

        from lf_controlplane.operator.callbackkeys import published_keys

        keys = callbackkeys.signing(_cluster_call(None, lambda kube: published_keys(kube, namespace)), time.time())
        if not keys:
            raise _fail(f"no key signs for namespace {namespace} now (Secret {namespace}/lf-callback-key)")
    else:
        path = _keys_path(namespace, keys_dir, state_dir)
        try:
            keys = callbackkeys.KeyRing(path.parent).signing_keys(namespace)
        except callbackkeys.NoSigningKey as exc:
            raise _fail(f"{exc} in {path.parent}") from None
    if output is not Output.table:
        view = {"namespace": namespace, "keys": msgspec.json.decode(callbackkeys.encode(keys))["keys"]}
        typer.echo(json.dumps(view, indent=2) if output is Output.json else yaml.safe_dump(view, sort_keys=False))
        return
    for key in keys:
        until = f"until {callbackkeys.rfc3339(key.not_after)}" if key.not_after is not None else "no end"
        typer.echo(f"{key.id}  {key.secret}  {until}")


@callbacks_app.command("rotate")
def callbacks_rotate(
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = DEFAULT_NAMESPACE,
    overlap: Annotated[
        str, typer.Option(help="How long the current key(s) keep signing beside the new one (0: stop at once).")
    ] = "24h",
    keys_dir: KeysDir = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    in_cluster: InCluster = False,
) -> None:
    """Add a new signing key; the current one keeps signing for --overlap, so receivers can move to the new key
    (`lf callbacks key` shows both) before the old one stops. With --kube the operator does it (asked for on the
    namespace's Secret lf-callback-key, waited for up to a minute)."""
    from lf_core import callbackkeys
    from lf_core.contract.specs import ManifestError, parse_duration

    try:
        overlap_s = 0.0 if overlap.strip() in ("0", "0s") else parse_duration(overlap, "--overlap")
    except ManifestError as exc:
        raise _fail(str(exc), 2) from None
    if in_cluster:
        from lf_controlplane.operator.callbackkeys import request_rotation

        fresh, keys = _cluster_call(None, lambda kube: request_rotation(kube, namespace, overlap_s))
    else:
        path = _keys_path(namespace, keys_dir, state_dir)
        try:
            fresh, keys = callbackkeys.rotate(path, overlap_s=overlap_s)
        except callbackkeys.CallbackKeyError as exc:
            raise _fail(str(exc)) from None
        except OSError as exc:
            raise _fail(f"cannot write {path}: {exc.strerror} (a mounted Secret is changed in the cluster)") from None
    typer.echo(f"new key {fresh.id} signs {namespace}'s callbacks from now")
    for key in keys:
        if key is not fresh and key.not_after is not None:
            typer.echo(f"key {key.id} signs too until {callbackkeys.rfc3339(key.not_after)}")
