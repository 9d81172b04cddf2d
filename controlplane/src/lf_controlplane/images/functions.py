"""A function's image: its runtime's base image + a dependency layer + a code layer, written into an OCI layout.

- Python: the base is `runtime-python` (Debian's python3.11, lf_runtime in /usr/lib/python3/dist-packages). The
  folder's `requirements.txt`, when there is one, is installed for the base's interpreter and platform
  (`pysite.install`: binary wheels for x86_64-manylinux_2_36, CPython 3.11) into
  /usr/local/lib/python3.11/dist-packages — on Debian's python path, after nothing the runtime needs — compiled
  to checked-hash byte code. The folder's files go to /function (LF_FUNCTION_DIR of the base).
- Go: the folder (a Go module) is built with the runtime by the wrapper `lf dev` uses (dev/builds.go_wrapper),
  static (CGO_ENABLED=0, -trimpath, no build id), onto `runtime-go` (no libc, no shell) as /function.
- Rust: the folder's crate is built in release with the runtime (dev/builds, the same cached build as `lf dev`)
  onto `runtime-rust` (glibc) as /function.

Deterministic: layers come from lf_controlplane.images.layers (sorted entries, fixed mtimes and owners), the
config from layout.write_image (fixed timestamps), so the same folder on the same base gives the same digest. The
dependency layer is cached by the requirements' hash and the base's digest (`~/.cache/lf/images/deps/`): pin
versions (`==`) for the same digest on another machine. Secrets (`.secrets/`) and tool state never go in.

The base comes from a layout (`oci:DIR:REF`) or a registry (`HOST:PORT/REPO[:TAG|@sha256:…]`, pulled with
registry.pull into a cache layout). This module is what `lf deploy --registry` and the pipeline's builder use.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lf_core.contract.specs import Function

from lf_controlplane.dev import builds
from lf_controlplane.dev.folders import MANIFEST, is_ignored
from lf_controlplane.images import pysite
from lf_controlplane.images.layers import Entry, Layer, write_layer
from lf_controlplane.images.layout import Image, Layout, LayoutError, Runtime

BASE_TAG = "0.1.0"
"""The tag `make images` pushes the runtime bases with (python -m tools.images)."""
BASE_REPOSITORY = "litefunctions/runtime-{runtime}"
FUNCTION_REF = "function"
CODE_DIR = "function"
DEPS_DIR = "usr/local/lib/python3.11/dist-packages"
COLD_BUILD_LOCK = Path("/tmp/lf-cold-build.lock")  # noqa: S108 (the machine-wide lock every cold build takes)
SKIPPED_TOP = (".secrets",)

Printer = Callable[[str, str], None]


class ImageBuildError(RuntimeError):
    """A function's image could not be built (the message names the step and carries the tool's output)."""


@dataclass(frozen=True)
class FunctionImage:
    layout: Layout
    ref: str
    digest: str
    layers: tuple[Layer, ...]
    """The function's own layers (dependencies, code), above the base's."""


def cache_dir() -> Path:
    configured = os.environ.get("LF_IMAGES_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "lf" / "images"


@contextmanager
def cold_build_lock() -> Iterator[None]:
    """One cold build at a time on this machine (go/cargo/maturin builds all take this lock)."""
    with COLD_BUILD_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def default_base(registry: str, runtime: str) -> str:
    return f"{registry}/{BASE_REPOSITORY.format(runtime=runtime)}:{BASE_TAG}"


def open_base(
    source: str, layout: Layout, *, credentials: tuple[str, str] | None = None, insecure: bool = False
) -> Image:
    """The base image `source`, its blobs brought into `layout`.

    `oci:DIR:REF` reads a layout on disk (its blobs are linked in); anything else is a registry reference, pulled
    into `layout` (credentials from the docker-style config, as registry.pull does; blobs already there are not
    fetched again)."""
    if source.startswith("oci:"):
        path, sep, ref = source.removeprefix("oci:").rpartition(":")
        if not sep or not path or not ref:
            raise ImageBuildError(f"{source!r}: a layout base is oci:DIR:REF")
        other = Layout.open(Path(path))
        image = other.image(ref)
        config = json.loads(other.read_blob(image.manifest))["config"]["digest"]
        for digest in (image.manifest.digest, config, *(layer.digest for layer in image.layers)):
            layout.copy_blob_from(other, digest)
        return image
    from lf_controlplane.images.registry import Credentials, pull

    pull(source, layout, "base", Credentials(*credentials) if credentials else None, insecure=insecure)
    return layout.image("base")


def code_entries(folder: Path, dest: str = CODE_DIR) -> list[Entry]:
    """The function's files under `dest`, root-owned and read-only to the runtime's user; without function.yaml's
    siblings that are tool state (IGNORED_PARTS, dot-folders such as .secrets)."""
    entries = [Entry(dest, "dir", 0o755)]
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if is_ignored(relative) or relative.parts[0].startswith("."):
            continue
        inside = f"{dest}/{relative.as_posix()}"
        if path.is_symlink():
            raise ImageBuildError(f"{path}: a symlink; a function's folder must hold plain files")
        if path.is_dir():
            entries.append(Entry(inside, "dir", 0o755))
        elif path.is_file():
            mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            entries.append(Entry(inside, "file", mode, source=path))
    if not any(e.path == f"{dest}/{MANIFEST}" for e in entries):
        raise ImageBuildError(f"{folder}: no {MANIFEST}")
    return entries


def _digest_of(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def python_deps_layer(requirements: Path, base_digest: str, blobs: Path, cache: Path) -> Layer:
    """`requirements.txt` installed for the base's Python into DEPS_DIR, as a layer (cached by its inputs)."""
    key = _digest_of("deps", base_digest, hashlib.sha256(requirements.read_bytes()).hexdigest())
    cached = cache / "deps" / key
    if cached.is_dir():
        found = sorted(cached.glob("sha256-*"))
        if found:
            blob = found[0]
            digest, size, diff_id = blob.name.replace("sha256-", "sha256:", 1), blob.stat().st_size, ""
            diff_id = (cached / "diff_id").read_text().strip()
            target = blobs / digest.removeprefix("sha256:")
            if not target.exists():
                shutil.copyfile(blob, target)
            return Layer(blob=target, digest=digest, size=size, diff_id=diff_id)
    with tempfile.TemporaryDirectory(prefix="lf-deps-") as scratch:
        site = Path(scratch) / "site"
        pysite.install(site, ["-r", str(requirements)])
        pysite.compile_tree(site, f"/{DEPS_DIR}")
        entries = [Entry(DEPS_DIR, "dir", 0o755)]
        for path in sorted(site.rglob("*")):
            inside = f"{DEPS_DIR}/{path.relative_to(site).as_posix()}"
            if path.is_symlink():
                entries.append(Entry(inside, "symlink", 0o777, target=os.readlink(path)))
            elif path.is_dir():
                entries.append(Entry(inside, "dir", 0o755))
            else:
                mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
                entries.append(Entry(inside, "file", mode, data=path.read_bytes()))
        layer = write_layer(entries, blobs)
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{cached.name}-", dir=cached.parent))
    try:
        shutil.copyfile(layer.blob, partial / layer.digest.replace("sha256:", "sha256-", 1))
        (partial / "diff_id").write_text(layer.diff_id + "\n")
        partial.rename(cached)
    except OSError:  # another build cached the same inputs first
        pass
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return layer


async def go_binary(function: Function, folder: Path, work: Path, printer: Printer) -> Path:
    """The function's Go module built with the runtime, static and reproducible (no cgo, no paths, no build id)."""
    go_mod = folder / "go.mod"
    if not go_mod.is_file():
        raise ImageBuildError(f"{function.name}: a Go function folder needs a go.mod (see `lf new --runtime go`)")
    found = builds._MODULE_LINE.search(go_mod.read_text(encoding="utf-8"))
    if found is None:
        raise ImageBuildError(f"{go_mod}: no `module` line")
    runtime = builds.runtimes_dir() / "go"
    work.mkdir(parents=True, exist_ok=True)
    for name, text in builds.go_wrapper(found.group(1), folder.resolve(), runtime).items():
        (work / name).write_text(text)
    sums = [p.read_text() for p in (runtime / "go.sum", folder / "go.sum") if p.is_file()]
    (work / "go.sum").write_text("".join(dict.fromkeys("".join(sums).splitlines(keepends=True))))
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    argv = [builds._tool("go"), "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", builds.BINARY, "."]
    try:
        with cold_build_lock():
            await builds._run(argv, work, env, f"image {function.name}", printer)
    except builds.BuildError as exc:
        raise ImageBuildError(str(exc)) from None
    return work / builds.BINARY


async def rust_binary(function: Function, folder: Path, work: Path, printer: Printer) -> Path:
    """The function's crate built in release with the runtime: the same cached build `lf dev` runs."""
    try:
        with cold_build_lock():
            return await builds.build(function, folder, work, printer)
    except builds.BuildError as exc:
        raise ImageBuildError(str(exc)) from None


async def build_function_image(
    function: Function,
    folder: Path,
    base: str,
    out: Path,
    *,
    printer: Printer,
    credentials: tuple[str, str] | None = None,
    insecure: bool = False,
    cache: Path | None = None,
) -> FunctionImage:
    """Build `function` (its folder `folder`) on the image `base` (see open_base) into the layout `out` (created
    when missing), tagged FUNCTION_REF. `credentials` are the registry's, for a base pulled from it."""
    cache = cache or cache_dir()
    layout = Layout.open(out) if (out / "index.json").exists() else Layout.create(out)
    try:
        base_image = await asyncio.to_thread(open_base, base, layout, credentials=credentials, insecure=insecure)
    except LayoutError as exc:
        raise ImageBuildError(f"base image {base}: {exc}") from None
    layers: list[Layer] = []
    history: list[str] = []
    runtime: Runtime = base_image.runtime
    label = f"image {function.name}"
    if function.runtime == "python":
        requirements = folder / "requirements.txt"
        if requirements.is_file():
            printer(label, f"installing {requirements.name} for python {pysite.PYTHON_VERSION} ({pysite.PLATFORM})")
            try:
                layer = await asyncio.to_thread(
                    python_deps_layer, requirements, base_image.manifest.digest, layout.blobs, cache
                )
            except pysite.InstallError as exc:
                raise ImageBuildError(f"{requirements}: {exc}") from None
            layers.append(layer)
            history.append("lf deploy: requirements.txt")
        layers.append(await asyncio.to_thread(write_layer, code_entries(folder), layout.blobs))
        history.append("lf deploy: code")
    elif function.runtime in builds.COMPILED:
        work = cache / "work" / f"{function.namespace}.{function.name}"
        if function.runtime == "go":
            binary = await go_binary(function, folder, work, printer)
        else:
            binary = await rust_binary(function, folder, work, printer)
        entry = Entry(builds.BINARY, "file", 0o755, source=binary)
        layers.append(await asyncio.to_thread(write_layer, [entry], layout.blobs))
        history.append(f"lf deploy: {function.runtime} build")
    else:
        raise ImageBuildError(f"{function.name}: no image recipe for runtime {function.runtime!r}")
    labels = {**runtime.labels, "io.litefunctions.function": f"{function.namespace}/{function.name}"}
    runtime = Runtime(runtime.entrypoint, runtime.cmd, runtime.env, runtime.user, runtime.workdir, labels)
    manifest = layout.write_image(FUNCTION_REF, base=base_image, layers=layers, runtime=runtime, history=history)
    return FunctionImage(layout, FUNCTION_REF, manifest.digest, tuple(layers))
