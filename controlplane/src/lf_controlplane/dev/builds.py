"""Compiled runtimes in `lf dev`: a Go or Rust function is built with its runtime into one binary per version.

A Go function folder is a Go module (`go.mod`) whose root package exports
`func Handle(ctx context.Context, req *lf.Request) (*lf.Response, error)`; a Rust one is a library crate exporting
`pub fn handle(req: Request) -> Result<Response>` (or `async fn`). Neither has a `main`: this module writes a tiny
wrapper (a main module or binary crate) in `<state>/builds/<namespace>.<name>/wrapper/` that depends on the
runtime (`runtimes/go`, `runtimes/rust` of this checkout) and on the function's folder by path, and calls the
runtime's entry point with the user's handler. A function's image (lf_controlplane.images.functions) builds
the same wrapper.

Builds are cached by content hash (the function's files and the runtime's sources): an unchanged function is not
rebuilt, and a hot reload only rebuilds what changed. The binaries (`~/.cache/lf/builds/`) and the compiler
caches (Go's default GOCACHE; Cargo's target dir `~/.cache/lf/cargo-target`) are shared between state dirs, so a
fresh state dir (each e2e module has one) neither rebuilds an unchanged function nor compiles dependencies again.
The build's output is relayed line by line; a failed build raises
`BuildError` carrying the compiler's messages, and the previous version keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import sys
import time
import tomllib
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from lf_core.contract.specs import Function

from lf_controlplane.dev.folders import fingerprint
from lf_controlplane.dev.supervising import Printer, read_lines

REPO = Path(__file__).resolve().parents[4]
"""The checkout `lf` runs from (editable install): where `runtimes/go` and `runtimes/rust` are."""
GO_RUNTIME_MODULE = "litefunctions.io/runtime"
COMPILED = ("go", "rust")
BINARY = "function"
_ERROR_TAIL_LINES = 40
_MODULE_LINE = re.compile(r"^module\s+(\S+)", re.MULTILINE)


class BuildError(RuntimeError):
    """A function could not be built; the message carries the compiler's output (its last lines)."""


def runtimes_dir() -> Path:
    """Where the runtimes' sources are: `LF_RUNTIMES_DIR`, else `runtimes/` of this checkout."""
    return Path(os.environ.get("LF_RUNTIMES_DIR") or REPO / "runtimes").resolve()


def binary_cache_dir() -> Path:
    """Built binaries by content hash, shared by every state dir (`LF_BUILD_CACHE` wins): a fresh state dir
    (each e2e module has one) starts an unchanged function without compiling it again."""
    configured = os.environ.get("LF_BUILD_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "lf" / "builds"


def cargo_target_dir() -> Path:
    """One Cargo target dir for every build (`CARGO_TARGET_DIR` wins), so dependencies compile once."""
    configured = os.environ.get("CARGO_TARGET_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "lf" / "cargo-target"


async def runtime_argv(function: Function, code_dir: Path, builds_dir: Path, printer: Printer) -> list[str]:
    """The command that runs one replica of `function`: the interpreter for Python, the built binary otherwise.

    Raises:
        BuildError: the Go or Rust build failed (or the toolchain is missing).
    """
    if function.runtime not in COMPILED:
        return [sys.executable, "-m", "lf_runtime"]
    return [str(await build(function, code_dir, builds_dir, printer))]


async def build(function: Function, code_dir: Path, builds_dir: Path, printer: Printer) -> Path:
    """Build `function` (cached by content hash) and return the path of its binary."""
    runtime = runtimes_dir() / function.runtime
    digest = _build_digest(code_dir, runtime)
    key = f"{function.namespace}.{function.name}"
    home = binary_cache_dir() / key
    binary = home / digest / BINARY
    label = f"build {function.name}"
    if binary.is_file():
        printer(label, f"{function.runtime}: unchanged, using the cached build {digest}")
        return binary
    wrapper = builds_dir / key / "wrapper"
    wrapper.mkdir(parents=True, exist_ok=True)
    printer(label, f"{function.runtime}: building {code_dir} ...")
    began = time.monotonic()
    if function.runtime == "go":
        built = await _build_go(function, code_dir, runtime, wrapper, label, printer)
    else:
        built = await _build_rust(function, code_dir, runtime, wrapper, label, printer)
    binary.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(built, binary.with_suffix(".tmp"))
    binary.with_suffix(".tmp").replace(binary)
    _prune(home, keep={digest})
    printer(label, f"{function.runtime}: built in {time.monotonic() - began:.1f} s ({digest})")
    return binary


def _build_digest(code_dir: Path, runtime: Path) -> str:
    """The function's files, the runtime's sources and, for Rust, the codec crate it links."""
    parts = [fingerprint(code_dir), fingerprint(runtime)]
    if runtime.name == "rust":
        parts.append(fingerprint(runtime.parent.parent / "native" / "src"))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _prune(home: Path, keep: set[str]) -> None:
    """Keep only the latest build of a function (a running replica's binary may be unlinked safely)."""
    for entry in home.iterdir():
        if entry.name not in keep:
            shutil.rmtree(entry, ignore_errors=True)


# ------------------------------------------------------------------------------------------------------ Go


def go_wrapper(module: str, code_dir: Path, runtime: Path) -> dict[str, str]:
    """The files of the generated main module: it requires the runtime and the function by path."""
    pseudo = "v0.0.0-00010101000000-000000000000"
    go_mod = (
        "module lf.local/build\n\ngo 1.26\n\n"
        f"require (\n\t{GO_RUNTIME_MODULE} {pseudo}\n\t{module} {pseudo}\n)\n\n"
        f"replace {GO_RUNTIME_MODULE} => {runtime}\n\nreplace {module} => {code_dir}\n"
    )
    main_go = (
        "// Code generated by lf dev; DO NOT EDIT.\npackage main\n\n"
        f'import (\n\thandler "{module}"\n\n\t"{GO_RUNTIME_MODULE}/serving"\n)\n\n'
        "func main() { serving.Main(handler.Handle) }\n"
    )
    return {"go.mod": go_mod, "main.go": main_go}


async def _build_go(
    function: Function, code_dir: Path, runtime: Path, wrapper: Path, label: str, printer: Printer
) -> Path:
    go_mod = code_dir / "go.mod"
    if not go_mod.is_file():
        raise BuildError(f"{function.name}: a Go function folder needs a go.mod (see `lf new --runtime go`)")
    found = _MODULE_LINE.search(go_mod.read_text(encoding="utf-8"))
    if found is None:
        raise BuildError(f"{go_mod}: no `module` line")
    for name, text in go_wrapper(found.group(1), code_dir.resolve(), runtime).items():
        (wrapper / name).write_text(text)
    sums = [p.read_text() for p in (runtime / "go.sum", code_dir / "go.sum") if p.is_file()]
    (wrapper / "go.sum").write_text("".join(dict.fromkeys("".join(sums).splitlines(keepends=True))))
    go = _tool("go")
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    await _run([go, "build", "-trimpath", "-o", BINARY, "."], wrapper, env, label, printer)
    return wrapper / BINARY


# ---------------------------------------------------------------------------------------------------- Rust


def rust_wrapper(package: str, function: Function, code_dir: Path, runtime: Path) -> dict[str, str]:
    """The files of the generated binary crate: it depends on the runtime and on the function's crate."""
    cargo_toml = f"""\
# Generated by lf dev; do not edit.
[package]
name = "{_bin_name(function)}"
version = "0.0.0"
edition = "2021"
publish = false

[[bin]]
name = "{_bin_name(function)}"
path = "main.rs"

[dependencies]
lf-runtime = {{ path = "{runtime}" }}
handler = {{ path = "{code_dir}", package = "{package}" }}

# The function's crate depends on `lf-runtime = "0.1"`; this points it at the runtime of this checkout.
[patch.crates-io]
lf-runtime = {{ path = "{runtime}" }}

# Standalone, even when the state dir is inside another Cargo workspace.
[workspace]

# Fast builds: the hot path is the runtime's, and a reload should not wait for fat LTO.
[profile.release]
opt-level = 3
lto = false
codegen-units = 16
incremental = true
panic = "unwind"  # a handler's panic is answered 500 (the runtime catches it at the task boundary)
"""
    main_rs = "// Generated by lf dev; do not edit.\nfn main() {\n    lf_runtime::main(handler::handle)\n}\n"
    return {"Cargo.toml": cargo_toml, "main.rs": main_rs}


def _bin_name(function: Function) -> str:
    return f"lf-fn-{function.namespace}-{function.name}"


async def _build_rust(
    function: Function, code_dir: Path, runtime: Path, wrapper: Path, label: str, printer: Printer
) -> Path:
    manifest = code_dir / "Cargo.toml"
    if not manifest.is_file():
        raise BuildError(f"{function.name}: a Rust function folder needs a Cargo.toml (see `lf new --runtime rust`)")
    try:
        package = tomllib.loads(manifest.read_text(encoding="utf-8"))["package"]["name"]
    except (tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise BuildError(f"{manifest}: no [package] name ({exc})") from None
    for name, text in rust_wrapper(package, function, code_dir.resolve(), runtime).items():
        (wrapper / name).write_text(text)
    seed = runtime.parent.parent / "Cargo.lock"  # the versions the runtime is tested with
    if not (wrapper / "Cargo.lock").exists() and seed.is_file():
        shutil.copyfile(seed, wrapper / "Cargo.lock")
    target = cargo_target_dir()
    env = {**os.environ, "CARGO_TARGET_DIR": str(target), "CARGO_TERM_COLOR": "never"}
    await _run([_tool("cargo"), "build", "--release", "--bin", _bin_name(function)], wrapper, env, label, printer)
    return target / "release" / _bin_name(function)


# ------------------------------------------------------------------------------------------------- running


def _tool(name: str) -> str:
    found = shutil.which(name) or (str(Path.home() / ".cargo" / "bin" / name) if name == "cargo" else None)
    if not found or not Path(found).exists():
        raise BuildError(f"`{name}` not found on PATH: install the toolchain to serve {name} functions")
    return found


async def _run(argv: Sequence[str], cwd: Path, env: dict[str, str], label: str, printer: Printer) -> None:
    """Run a build command, relaying its output; raise BuildError with the output's tail when it fails."""
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert process.stdout is not None
    lines: deque[str] = deque(maxlen=_ERROR_TAIL_LINES)  # what a failure shows; a long line is cut (read_lines)
    async for raw in read_lines(process.stdout):
        line = raw.rstrip()
        lines.append(line)
        printer(label, line)
    code = await process.wait()
    if code != 0:
        tail = "\n".join(lines)
        raise BuildError(f"build failed (`{' '.join(argv)}` exited with {code}):\n{tail}")


def main(argv: Sequence[str] = sys.argv[1:]) -> None:
    """`python -m lf_controlplane.dev.builds FOLDER...`: build Go/Rust function folders into the shared cache,
    so a later `lf dev` (e.g. the e2e tests' fresh state dirs) starts them without compiling."""
    import tempfile

    from lf_controlplane.dev.folders import read_folder
    from lf_controlplane.dev.supervising import print_line

    with tempfile.TemporaryDirectory(prefix="lf-builds-") as scratch:
        for path in argv:
            folder = read_folder(Path(path).resolve())
            if folder.function is None:
                raise SystemExit(folder.error)
            asyncio.run(runtime_argv(folder.function, folder.path, Path(scratch), print_line))


if __name__ == "__main__":
    main()
