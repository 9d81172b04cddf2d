"""tools/registry without building Zot: the cache check reads the commit Zot reports, the build flags carry it,
and the harness's htpasswd and auth files are what Zot, skopeo and lf_controlplane.images.registry read."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from lf_controlplane.images.registry import Credentials, credentials_from_config

from tools.registry import build
from tools.registry.zot import Zot, ZotError, write_auth_file, write_htpasswd


def fake_zot(path: Path, commit: str) -> Path:
    log = json.dumps({"level": "info", "commit": commit, "binary-type": "minimal", "message": "version"})
    path.write_text(f"#!/bin/sh\n[ \"$1\" = --version ] && echo '{log}' >&2\n")
    path.chmod(0o755)
    return path


def test_the_cached_binary_is_current_only_at_the_pinned_commit(tmp_path: Path) -> None:
    assert build.version_ok(fake_zot(tmp_path / "current", build.ZOT_COMMIT))
    assert not build.version_ok(fake_zot(tmp_path / "old", "0" * 40))
    assert not build.version_ok(tmp_path / "absent")


def test_the_build_flags_stamp_the_commit() -> None:
    flags = build.ldflags("go1.26.8")
    assert f"buildinfo.Commit={build.ZOT_COMMIT}" in flags
    assert "buildinfo.BinaryType=minimal" in flags and flags.endswith("-s -w")


def test_a_missing_source_snapshot_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "SOURCE", tmp_path / "nowhere")
    with pytest.raises(build.BuildError, match="no Zot source snapshot at .*nowhere"):
        build.build(tmp_path / "out")


@pytest.mark.skipif(shutil.which("htpasswd") is None, reason="htpasswd (apache2-utils) is not installed")
def test_the_htpasswd_file_is_bcrypt_and_verifies(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    write_htpasswd(path, "lf", "s3cret pass")
    user, _, hashed = path.read_text().strip().partition(":")
    assert user == "lf" and hashed.startswith("$2y$")
    ok = subprocess.run(["htpasswd", "-vb", str(path), "lf", "s3cret pass"], capture_output=True, check=False)
    bad = subprocess.run(["htpasswd", "-vb", str(path), "lf", "wrong"], capture_output=True, check=False)
    assert (ok.returncode, bad.returncode) == (0, 3)


def test_the_auth_file_is_private_and_readable_by_the_client(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    write_auth_file(path, "127.0.0.1:5000", "lf", "p:w")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert credentials_from_config("127.0.0.1:5000", path) == Credentials("lf", "p:w")


def test_starting_without_a_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ZotError, match="no zot binary at .*tools.registry build"):
        Zot(tmp_path / "zot-minimal", tmp_path / "run").start()
