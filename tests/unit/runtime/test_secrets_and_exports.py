"""secret(name) and the public names of lf_runtime."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lf_runtime
import pytest
from lf_runtime import SecretNotFoundError, secret, secrets_files


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Iterator[Path]:
    secrets_files.configure(tmp_path)
    yield tmp_path
    secrets_files.configure(None)


def test_exported_members() -> None:
    assert sorted(lf_runtime.__all__) == [
        "CloudEvent",
        "Headers",
        "QueryParams",
        "Request",
        "RequestError",
        "Response",
        "SecretNotFoundError",
        "secret",
    ]
    for name in lf_runtime.__all__:
        assert getattr(lf_runtime, name).__module__.startswith("lf_runtime")


def test_secret_reads_the_file_minus_one_newline(secrets_dir: Path) -> None:
    (secrets_dir / "token").write_text("s3cret\n")
    (secrets_dir / "multi").write_text("a\nb\n\n")
    assert secret("token") == "s3cret"
    assert secret("multi") == "a\nb\n"


def test_missing_secret_is_clear(secrets_dir: Path) -> None:
    (secrets_dir / "other").write_text("x")
    with pytest.raises(SecretNotFoundError, match="'token' is not mounted .*available: other"):
        secret("token")


@pytest.mark.parametrize("name", ["", "..", "../etc/passwd", "a/b"])
def test_secret_names_are_plain_file_names(secrets_dir: Path, name: str) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        secret(name)


def test_unconfigured_falls_back_to_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets_files.configure(None)
    monkeypatch.delenv("LF_SECRETS_DIR", raising=False)
    with pytest.raises(SecretNotFoundError, match="LF_SECRETS_DIR is not set"):
        secret("token")
    (tmp_path / "token").write_text("t")
    monkeypatch.setenv("LF_SECRETS_DIR", str(tmp_path))
    assert secret("token") == "t"
