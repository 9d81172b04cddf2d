"""Images the single-node cluster needs, made locally: the sandbox ("pause") image and lf-probe, the tests' workload.

Each is one static Go program (tools/k8s/testimages/) in a one-layer OCI image written with the project's own
writer (lf_controlplane.images), archived as a tar that `ctr images import` reads. The tag is the binary's digest,
so a changed program gives a new image and an unchanged one the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lf_controlplane.images.layers import Entry, write_layer
from lf_controlplane.images.layout import Layout, Runtime

from tools.k8s import build

PROGRAMS = build.HERE / "testimages"
REPOSITORY = "lf.local"


@dataclass(frozen=True)
class LocalImage:
    """An image as an OCI layout (to push with lf_controlplane.images.registry) and as an archive (to import with
    ctr), and the reference it is tagged, imported and named in pod specs as."""

    ref: str
    layout: Path
    archive: Path


def build_program(name: str, out_dir: Path) -> Path:
    """`go build` one program of tools/k8s/testimages (a small static binary: seconds, no lock needed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / name
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly -buildvcs=false", "GOTOOLCHAIN": "local"}
    command = [build.go_tool(), "build", "-trimpath", "-ldflags=-s -w", "-o", str(target), f"./{name}"]
    done = subprocess.run(command, cwd=PROGRAMS, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise build.BuildError(f"building tools/k8s/testimages/{name} failed: {done.stderr.strip()}")
    return target


def pack(binary: Path, image_name: str, out_dir: Path, *, args: tuple[str, ...] = ()) -> LocalImage:
    """`binary` as `/<name>` in a one-layer image whose entrypoint it is, as an OCI archive (a tarred layout)."""
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()[:16]
    ref = f"{REPOSITORY}/{image_name}:{digest}"
    folder = out_dir / f"{image_name}-{digest}.oci"
    archive = out_dir / f"{image_name}-{digest}.oci.tar"
    if archive.exists() and (folder / "index.json").exists():
        return LocalImage(ref, folder, archive)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    layout = Layout.create(folder)
    layer = write_layer([Entry(binary.name, "file", 0o755, source=binary)], layout.blobs)
    runtime = Runtime(entrypoint=(f"/{binary.name}",), cmd=args)
    layout.write_image(ref, base=None, layers=[layer], runtime=runtime, history=[f"tools/k8s {binary.name}"])
    with tempfile.NamedTemporaryFile(dir=out_dir, suffix=".partial", delete=False) as handle:
        partial = Path(handle.name)
    try:
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(folder.rglob("*")):
                info = tar.gettarinfo(str(path), arcname=path.relative_to(folder).as_posix())
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                if info.isfile():
                    with path.open("rb") as member:
                        tar.addfile(info, member)
                else:
                    tar.addfile(info)
        partial.replace(archive)
    finally:
        partial.unlink(missing_ok=True)
    return LocalImage(ref, folder, archive)


def pause_image(cache: Path) -> LocalImage:
    """The sandbox image containerd is pinned to (no registry holds one here)."""
    return pack(build_program("pause", cache / "programs"), "pause", cache / "images")


def probe_image(cache: Path) -> LocalImage:
    """lf-probe: `serve` by default; `resolve NAME` and `get URL` for checks run inside pods with kubectl exec."""
    binary = build_program("probe", cache / "programs")
    renamed = binary.with_name("lf-probe")
    binary.replace(renamed)
    return pack(renamed, "lf-probe", cache / "images", args=("serve",))
