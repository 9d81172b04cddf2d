"""Build kube-apiserver, etcd (and kubectl when the machine has none) into a cache outside the repo.

k8s.io/kubernetes cannot be `go install`ed: its go.mod requires its ~33 staging modules at v0.0.0 and maps them to
./staging with `replace`. The wrapper module apiserver/ requires k8s.io/kubernetes at the pinned version and
replaces every staging module with its published v0.X.Y; `pin` regenerates that block from the published go.mod
(the list changes between minors) and the etcd version Kubernetes itself requires. `build` uses the checked-in
go.mod/go.sum read-only, so a build is reproducible.

Binaries go to $LF_K8S_CACHE (default ~/.cache/lf/k8s)/<version>/ with build logs and `build-stats.json` (wall
time and peak RSS per binary, measured by /usr/bin/time -v when present). A binary whose `--version` already
reports the pinned version is not rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tools import gobuild
from tools.gobuild import BuildError as BuildError  # the error of this module's builds, re-exported
from tools.gobuild import cold_build_lock, run_logged

HERE = Path(__file__).resolve().parent
APISERVER_MODULE = HERE / "apiserver"
ETCD_MODULE = HERE / "etcd"
NODE_COMMANDS = ("kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
CACHE = Path(os.environ.get("LF_K8S_CACHE", Path.home() / ".cache" / "lf" / "k8s"))


def go_tool() -> str:
    return gobuild.go_tool("Kubernetes")


def _required(go_mod: Path, module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(), re.MULTILINE)
    if match is None:
        raise BuildError(f"{go_mod} does not require {module}")
    return match.group(1)


def kubernetes_version() -> str:
    """The pinned Kubernetes version (from the wrapper's go.mod)."""
    return _required(APISERVER_MODULE / "go.mod", "k8s.io/kubernetes")


def etcd_version() -> str:
    return _required(ETCD_MODULE / "go.mod", "go.etcd.io/etcd/server/v3")


@dataclass(frozen=True)
class Binary:
    name: str
    module_dir: Path
    package: str
    version: str
    ldflags: tuple[str, ...] = ()

    def version_ok(self, path: Path) -> bool:
        """True when `path --version` reports this binary's pinned version."""
        if not path.is_file():
            return False
        args = [str(path), "version", "--client"] if self.name == "kubectl" else [str(path), "--version"]
        try:
            out = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return self.version.lstrip("v") in out.stdout + out.stderr


def _k8s_ldflags(version: str) -> tuple[str, ...]:
    major, minor = version.lstrip("v").split(".")[:2]
    prefix = "k8s.io/component-base/version"
    flags = []
    for pkg in (prefix, "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return tuple(flags)


def binaries(with_kubectl: bool) -> list[Binary]:
    k8s = kubernetes_version()
    found = [
        Binary("etcd", ETCD_MODULE, "go.etcd.io/etcd/server/v3", etcd_version()),
        Binary("kube-apiserver", APISERVER_MODULE, "k8s.io/kubernetes/cmd/kube-apiserver", k8s, _k8s_ldflags(k8s)),
    ]
    if with_kubectl:
        found.append(Binary("kubectl", APISERVER_MODULE, "k8s.io/kubernetes/cmd/kubectl", k8s, _k8s_ldflags(k8s)))
    return found


def cache_dir() -> Path:
    return CACHE / kubernetes_version()


def system_kubectl() -> str | None:
    return shutil.which("kubectl")


def kubectl_path() -> Path:
    """kubectl to use in tests: the machine's when present, else the one built into the cache."""
    found = system_kubectl()
    return Path(found) if found else cache_dir() / "kubectl"


def build_one(binary: Binary, folder: Path, log_dir: Path) -> dict[str, object]:
    target = folder / binary.name
    log = log_dir / f"{binary.name}.build.log"
    tmp = folder / f".{binary.name}.tmp"
    command = [go_tool(), "build", "-trimpath", "-o", str(tmp)]
    if binary.ldflags:
        command += ["-ldflags", "-s -w " + " ".join(binary.ldflags)]
    else:
        command += ["-ldflags", "-s -w"]
    command.append(binary.package)
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly -buildvcs=false", "GOTOOLCHAIN": "local"}
    label = f"k8s harness: {binary.name} {binary.version}"
    with cold_build_lock():
        measured = run_logged(command, cwd=binary.module_dir, env=env, log=log, label=label)
    tmp.replace(target)
    return {"version": binary.version, "seconds": measured.seconds, "peak_rss_kib": measured.peak_rss_kib}


def ensure(with_kubectl: bool | None = None) -> Path:
    """The cache folder holding etcd and kube-apiserver (and kubectl when the machine lacks one), built if needed."""
    if with_kubectl is None:
        with_kubectl = system_kubectl() is None
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stats_path = folder / "build-stats.json"
    stats: dict[str, object] = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    for binary in binaries(with_kubectl):
        if binary.version_ok(folder / binary.name):
            continue
        stats[binary.name] = build_one(binary, folder, folder)
        stats_path.write_text(json.dumps(stats, indent=2) + "\n")
    return folder


# -- pin: regenerate the wrapper modules ------------------------------------------------------------------------

_HEADER_APISERVER = """\
// Builds kube-apiserver (and kubectl, when a machine has none) at a pinned Kubernetes version for the operator's
// test harness, and the node's kube-controller-manager, kube-scheduler, kubelet and kube-proxy (tools/k8s/node.py).
// Generated by `python -m tools.k8s pin {version}`: k8s.io/kubernetes requires its staging modules at v0.0.0 and
// maps them to ./staging, so this module replaces each with its published {staging}. Do not edit by hand.
"""

_HEADER_ETCD = """\
// Builds etcd at the version Kubernetes {version} requires, for the operator's test harness.
// Generated by `python -m tools.k8s pin {version}`. Do not edit by hand.
"""


def _go_json(args: list[str], cwd: Path) -> dict[str, str]:
    out = subprocess.run([go_tool(), *args], cwd=cwd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise BuildError(f"go {' '.join(args)} failed: {out.stderr.strip()}")
    return dict(json.loads(out.stdout))


def staging_modules(published_go_mod: str) -> list[str]:
    """Modules k8s.io/kubernetes both requires and replaces with ./staging (the ones a wrapper must replace)."""
    replaced = set(re.findall(r"^\s*(k8s\.io/\S+)\s+=>\s+\./staging/", published_go_mod, re.MULTILINE))
    required = set(re.findall(r"^\s*(k8s\.io/\S+)\s+v0\.0\.0\b", published_go_mod, re.MULTILINE))
    return sorted(replaced & required)


def render_apiserver_go_mod(version: str, modules: list[str], go_directive: str) -> str:
    staging = "v0." + version.lstrip("v").split(".", 1)[1]
    lines = [_HEADER_APISERVER.format(version=version, staging=staging)]
    lines.append("module litefunctions.io/tools/k8s/apiserver\n")
    lines.append(f"go {go_directive}\n")
    lines.append(f"require k8s.io/kubernetes {version}\n")
    lines.append("replace (")
    lines += [f"\t{module} => {module} {staging}" for module in modules]
    lines.append(")\n")
    lines.append("tool (")
    lines += [f"\tk8s.io/kubernetes/cmd/{name}" for name in ("kube-apiserver", "kubectl", *NODE_COMMANDS)]
    lines.append(")")
    return "\n".join(lines) + "\n"


def render_etcd_go_mod(version: str, etcd: str, go_directive: str) -> str:
    return (
        _HEADER_ETCD.format(version=version)
        + "\nmodule litefunctions.io/tools/k8s/etcd\n\n"
        + f"go {go_directive}\n\nrequire go.etcd.io/etcd/server/v3 {etcd}\n\ntool go.etcd.io/etcd/server/v3\n"
    )


def pin(version: str) -> None:
    """Rewrite apiserver/go.mod and etcd/go.mod for Kubernetes `version`, then `go mod tidy` both."""
    info = _go_json(["mod", "download", "-json", f"k8s.io/kubernetes@{version}"], HERE)
    published = Path(info["GoMod"]).read_text()
    go_directive = re.search(r"^go\s+(\S+)", published, re.MULTILINE)
    if go_directive is None:
        raise BuildError("the published go.mod has no go directive")
    etcd = re.search(r"^\s*go\.etcd\.io/etcd/server/v3\s+(v\S+)", published, re.MULTILINE)
    if etcd is None:
        raise BuildError("the published go.mod does not require go.etcd.io/etcd/server/v3")
    modules = staging_modules(published)
    (APISERVER_MODULE / "go.mod").write_text(render_apiserver_go_mod(version, modules, go_directive.group(1)))
    (ETCD_MODULE / "go.mod").write_text(render_etcd_go_mod(version, etcd.group(1), go_directive.group(1)))
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    for module_dir in (APISERVER_MODULE, ETCD_MODULE):
        done = subprocess.run([go_tool(), "mod", "tidy"], cwd=module_dir, env=env, check=False)
        if done.returncode != 0:
            raise BuildError(f"go mod tidy failed in {module_dir}")


# -- the node: kube-controller-manager, kube-scheduler, kubelet, kube-proxy and kubectl in one `go build` ------------


def node_binaries() -> list[Binary]:
    k8s = kubernetes_version()
    flags = _k8s_ldflags(k8s)
    names = (*NODE_COMMANDS, "kubectl")
    return [Binary(name, APISERVER_MODULE, f"k8s.io/kubernetes/cmd/{name}", k8s, flags) for name in names]


def build_group(group: str, wanted: list[Binary], folder: Path, env_extra: dict[str, str] | None = None) -> None:
    """Build the binaries of one module with ONE `go build -o DIR/ pkg...` (the linker runs once per binary, but
    the packages they share compile once), move them into `folder`, record the group in build-stats.json."""
    if not wanted:
        return
    module_dir = wanted[0].module_dir
    if any(binary.module_dir != module_dir or binary.ldflags != wanted[0].ldflags for binary in wanted):
        raise BuildError(f"{group}: one go build needs one module and one set of ldflags")
    out_dir = folder / f".{group}.tmp"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    log = folder / f"{group}.build.log"
    command = [
        go_tool(),
        "build",
        "-trimpath",
        "-o",
        f"{out_dir}/",
        "-ldflags",
        " ".join(("-s", "-w", *wanted[0].ldflags)),
    ]
    command += [binary.package for binary in wanted]
    env = {
        **os.environ,
        "CGO_ENABLED": "0",
        "GOFLAGS": "-mod=readonly -buildvcs=false",
        "GOTOOLCHAIN": "local",
        **(env_extra or {}),
    }
    names = ", ".join(binary.name for binary in wanted)
    with cold_build_lock():
        measured = run_logged(command, cwd=module_dir, env=env, log=log, label=f"k8s harness: {names}")
    sizes: dict[str, int] = {}
    for binary in wanted:
        built = out_dir / Path(binary.package).name
        if not built.is_file():
            raise BuildError(f"go build did not produce {built.name} for {binary.name}; see {log}")
        built.replace(folder / binary.name)
        sizes[binary.name] = (folder / binary.name).stat().st_size
    shutil.rmtree(out_dir, ignore_errors=True)
    _record(folder, group, {"binaries": sizes, "seconds": measured.seconds, "peak_rss_kib": measured.peak_rss_kib})


def _record(folder: Path, key: str, entry: dict[str, object]) -> None:
    stats_path = folder / "build-stats.json"
    stats: dict[str, object] = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    stats[key] = entry
    stats_path.write_text(json.dumps(stats, indent=2) + "\n")


def ensure_node() -> Path:
    """The cache folder with everything `ensure()` builds plus the node's Kubernetes binaries and kubectl."""
    folder = ensure(with_kubectl=False)
    missing = [binary for binary in node_binaries() if not binary.version_ok(folder / binary.name)]
    build_group("node", missing, folder)
    return ensure_addons(folder)


# -- the node's add-ons: containerd, CoreDNS, kube-router (NetworkPolicy), metrics-server ----------------------------


@dataclass(frozen=True)
class Addon:
    """A wrapper module under tools/k8s/<name>/ requiring `module` and listing `packages` as its tools."""

    name: str
    module: str
    packages: tuple[str, ...]
    version_var: str = ""  # the package variable -X sets to the module's version
    tags: tuple[str, ...] = ()

    @property
    def module_dir(self) -> Path:
        return HERE / self.name

    @property
    def version(self) -> str:
        return _required(self.module_dir / "go.mod", self.module)

    def outputs(self) -> list[str]:
        return [Path(package).name for package in self.packages]

    def fingerprint(self) -> str:
        """What a build depends on: go.mod, go.sum, the flags, the Go version."""
        digest = hashlib.sha256()
        for part in ("go.mod", "go.sum"):
            digest.update((self.module_dir / part).read_bytes())
        digest.update(repr((self.packages, self.version_var, self.tags, _go_version())).encode())
        return digest.hexdigest()


ADDONS = (
    Addon(
        "containerd",
        "github.com/containerd/containerd/v2",
        (
            "github.com/containerd/containerd/v2/cmd/containerd",
            "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
            "github.com/containerd/containerd/v2/cmd/ctr",
        ),
        "github.com/containerd/containerd/v2/version.Version",
        ("no_btrfs", "no_devmapper", "no_zfs"),
    ),
    Addon("coredns", "github.com/coredns/coredns", ("github.com/coredns/coredns",)),
    Addon(
        "kube-router",
        "github.com/cloudnativelabs/kube-router/v2",
        ("github.com/cloudnativelabs/kube-router/v2/cmd/kube-router",),
        "github.com/cloudnativelabs/kube-router/v2/pkg/version.Version",
    ),
    Addon(
        "metrics-server",
        "sigs.k8s.io/metrics-server",
        ("sigs.k8s.io/metrics-server/cmd/metrics-server",),
        "k8s.io/client-go/pkg/version.gitVersion",
    ),
)


def _go_version() -> str:
    return subprocess.run([go_tool(), "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()


def build_addon(addon: Addon, folder: Path) -> None:
    stamp = folder / f"{addon.name}.stamp"
    fingerprint = addon.fingerprint()
    if stamp.exists() and stamp.read_text() == fingerprint and all((folder / o).is_file() for o in addon.outputs()):
        return
    ldflags = (f"-X {addon.version_var}={addon.version}",) if addon.version_var else ()
    binaries = [Binary(Path(p).name, addon.module_dir, p, addon.version, ldflags) for p in addon.packages]
    env = {"GOFLAGS": "-mod=readonly -buildvcs=false" + (f" -tags={','.join(addon.tags)}" if addon.tags else "")}
    build_group(addon.name, binaries, folder, env_extra=env)
    stamp.write_text(fingerprint)


def ensure_addons(folder: Path) -> Path:
    for addon in ADDONS:
        build_addon(addon, folder)
    return folder
