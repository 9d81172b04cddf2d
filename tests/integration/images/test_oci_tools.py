"""Images written by lf_controlplane.images, read by the OCI tools the platform relies on (Debian's umoci and
skopeo): umoci unpacks the root filesystem with the files, modes and owners the layers say, and skopeo reads the
manifest and copies the image to another layout without changing its digest."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from lf_controlplane.images.layers import Entry, entries_from_dir, write_layer
from lf_controlplane.images.layout import Layout, Runtime

pytestmark = pytest.mark.integration


def run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}"
    return done.stdout


@pytest.fixture
def image(tmp_path: Path) -> tuple[Layout, str]:
    code = tmp_path / "code"
    code.mkdir()
    (code / "handler.py").write_text("def handle(req):\n    return 'hi'\n")
    (code / "tool").write_text("#!/bin/sh\n")
    (code / "tool").chmod(0o750)
    layout = Layout.create(tmp_path / "layout")
    base = write_layer([Entry("etc/os-release", data=b"ID=debian\n"), Entry("tmp", "dir", 0o1777)], layout.blobs)
    layout.write_image("base", base=None, layers=[base], runtime=Runtime(env=("PATH=/usr/bin",)))
    layer = write_layer(entries_from_dir(code, "function", uid=65532, gid=65532), layout.blobs)
    runtime = Runtime(entrypoint=("python", "-m", "lf_runtime"), user="65532:65532", workdir="/function")
    manifest = layout.write_image("hello", base=layout.image("base"), layers=[layer], runtime=runtime)
    return layout, manifest.digest


def test_umoci_unpacks_what_the_layers_hold(image: tuple[Layout, str], tmp_path: Path) -> None:
    layout, _ = image
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--image", f"{layout.root}:hello", str(bundle))
    rootfs = bundle / "rootfs"
    assert (rootfs / "etc" / "os-release").read_text() == "ID=debian\n"
    handler = (rootfs / "function" / "handler.py").stat()
    assert (handler.st_uid, handler.st_gid, handler.st_mode & 0o7777) == (65532, 65532, 0o644)
    assert (rootfs / "function" / "tool").stat().st_mode & 0o7777 == 0o750
    assert (rootfs / "tmp").stat().st_mode & 0o7777 == 0o1777
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["args"] == ["python", "-m", "lf_runtime"]
    assert config["process"]["cwd"] == "/function"
    assert (config["process"]["user"]["uid"], config["process"]["user"]["gid"]) == (65532, 65532)


def test_skopeo_reads_and_copies_it_digest_for_digest(image: tuple[Layout, str], tmp_path: Path) -> None:
    layout, digest = image
    inspected = json.loads(run("skopeo", "inspect", f"oci:{layout.root}:hello"))
    assert inspected["Digest"] == digest
    assert len(inspected["Layers"]) == 2
    copy = tmp_path / "copy"
    run("skopeo", "copy", "--quiet", f"oci:{layout.root}:hello", f"oci:{copy}:hello")
    assert Layout.open(copy).find("hello").digest == digest
