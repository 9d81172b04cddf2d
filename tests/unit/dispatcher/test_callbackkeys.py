"""The callback key files (lf_core.callbackkeys): format, rotation with an overlap, the dispatcher's key ring
(re-read on change, created only where writable) and `lf callbacks key|rotate`."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from lf_controlplane.cli import app
from lf_core import callbackkeys
from lf_core.callbackkeys import CallbackKeyError, Key, KeyRing, NoSigningKey
from typer.testing import CliRunner

NOW = 1_765_000_000.0
SECRET = "s" * 64


def test_the_file_round_trips_and_reads_as_documented(tmp_path: Path) -> None:
    path = tmp_path / "team-a.json"
    keys = [Key("k1", SECRET, NOW - 10, NOW + 10), Key("k2", "t" * 64, NOW)]
    callbackkeys.write(path, keys)
    assert callbackkeys.read(path) == keys
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = json.loads(path.read_bytes())
    assert raw["keys"][0] == {
        "id": "k1",
        "secret": SECRET,
        "created": "2025-12-06T05:46:30Z",
        "notAfter": "2025-12-06T05:46:50Z",
    }
    assert "notAfter" not in raw["keys"][1]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"nope", "not JSON"),
        (b'{"keys": [{"id": "k", "secret": "short", "created": "2026-01-01T00:00:00Z"}]}', "at least 32"),
        (b'{"keys": [{"id": "k", "secret": "' + b"s" * 64 + b'", "created": "yesterday"}]}', "created"),
        (b'{"keys": [{"id": "k", "secret": "' + b"s" * 64 + b'", "created": "2026-01-01T00:00:00"}]}', "time zone"),
        (b'{"keys": [{"id": "a,b", "secret": "' + b"s" * 64 + b'", "created": "2026-01-01T00:00:00Z"}]}', "id"),
        (b'{"keys": [{"id": "k", "secret": "' + b"s" * 64 + b'", "created": "2026-01-01T00:00:00Z", "x": 1}]}', "x"),
    ],
)
def test_a_bad_file_is_refused_naming_it(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "default.json"
    path.write_bytes(content)
    with pytest.raises(CallbackKeyError, match=message) as caught:
        callbackkeys.read(path)
    assert str(path) in str(caught.value)
    with pytest.raises(NoSigningKey, match="no signing key for namespace default"):
        KeyRing(tmp_path).signing_keys("default", NOW)


def test_rotate_keeps_the_old_key_signing_through_the_overlap(tmp_path: Path) -> None:
    path = tmp_path / "default.json"
    first, keys = callbackkeys.rotate(path, overlap_s=3600, now=NOW)  # a first rotation just creates one
    assert keys == [first] and first.not_after is None
    second, keys = callbackkeys.rotate(path, overlap_s=3600, now=NOW + 100)
    assert [k.id for k in keys] == [first.id, second.id]
    assert keys[0].not_after == NOW + 3700 and second.not_after is None
    assert [k.id for k in callbackkeys.signing(keys, NOW + 200)] == [second.id, first.id]
    assert [k.id for k in callbackkeys.signing(keys, NOW + 3700)] == [second.id]
    third, keys = callbackkeys.rotate(path, overlap_s=24 * 3600, now=NOW + 3800)  # the first has ended: dropped
    assert [k.id for k in keys] == [second.id, third.id]
    _, keys = callbackkeys.rotate(path, overlap_s=0, now=NOW + 3900)  # overlap 0: the others stop at once
    assert len(callbackkeys.signing(keys, NOW + 3900)) == 1


def test_an_overlap_never_extends_a_key_that_ends_sooner(tmp_path: Path) -> None:
    path = tmp_path / "default.json"
    callbackkeys.write(path, [Key("old", SECRET, NOW - 10, NOW + 60)])
    _, keys = callbackkeys.rotate(path, overlap_s=3600, now=NOW)
    assert keys[0].not_after == NOW + 60


def test_the_ring_creates_a_key_on_first_need_where_writable(tmp_path: Path) -> None:
    directory = tmp_path / ".lf" / "callback-keys"
    ring = KeyRing(directory)
    keys = ring.signing_keys("default", NOW)
    assert len(keys) == 1 and len(keys[0].secret) == 64
    path = directory / "default.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert ring.signing_keys("default", NOW) == keys
    assert KeyRing(directory).signing_keys("default", NOW) == keys  # another process reads the same key
    assert ring.signing_keys("other", NOW) != keys  # a key per namespace


def test_a_read_only_directory_never_gets_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a mounted Secret is a read-only file system: os.access says so even to root (chmod would not stop root)
    monkeypatch.setattr(os, "access", lambda path, mode: mode != os.W_OK)
    with pytest.raises(NoSigningKey, match="^no signing key for namespace team-a$"):
        KeyRing(tmp_path).signing_keys("team-a", NOW)
    assert list(tmp_path.iterdir()) == []


def test_without_a_directory_nothing_signs() -> None:
    with pytest.raises(NoSigningKey, match="LF_CALLBACK_KEYS_DIR is not set"):
        KeyRing(None).signing_keys("default", NOW)
    with pytest.raises(NoSigningKey, match="namespace"):
        KeyRing(Path("/nonexistent")).signing_keys("Not_A_Name", NOW)


def test_the_ring_rereads_a_file_changed_in_place_like_kubelet_does(tmp_path: Path) -> None:
    """kubelet's atomic writer: the file is a symlink through `..data`, which is swapped to a new folder."""

    def publish(version: str, keys: list[Key]) -> None:
        folder = tmp_path / f"..{version}"
        folder.mkdir()
        (folder / "default.json").write_bytes(callbackkeys.encode(keys))
        (tmp_path / "..data_tmp").symlink_to(folder.name)
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
        if not (tmp_path / "default.json").is_symlink():
            (tmp_path / "default.json").symlink_to("..data/default.json")

    publish("v1", [Key("one", SECRET, NOW - 10)])
    ring = KeyRing(tmp_path, create=False)
    assert [k.id for k in ring.signing_keys("default", NOW)] == ["one"]
    publish("v2", [Key("one", SECRET, NOW - 10, NOW + 100), Key("two", "t" * 64, NOW - 5)])
    assert [k.id for k in ring.signing_keys("default", NOW)] == ["two", "one"]
    assert [k.id for k in ring.signing_keys("default", NOW + 100)] == ["two"]


def test_keys_that_ended_are_replaced_where_writable(tmp_path: Path) -> None:
    callbackkeys.write(tmp_path / "default.json", [Key("gone", SECRET, NOW - 100, NOW - 1)])
    with pytest.raises(NoSigningKey):
        KeyRing(tmp_path, create=False).signing_keys("default", NOW)
    keys = KeyRing(tmp_path).signing_keys("default", NOW)
    assert [k.id for k in keys] != ["gone"] and len(callbackkeys.read(tmp_path / "default.json")) == 2


# -- lf callbacks ---------------------------------------------------------------------------------------------------


def test_lf_callbacks_key_and_rotate(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"LF_STATE_DIR": str(tmp_path / ".lf")}
    shown = runner.invoke(app, ["callbacks", "key", "-n", "team-a"], env=env)
    assert shown.exit_code == 0, shown.output
    first_id, first_secret, until = shown.output.split(maxsplit=2)
    assert until.strip() == "no end" and len(first_secret) == 64
    assert (tmp_path / ".lf" / "callback-keys" / "team-a.json").exists()

    rotated = runner.invoke(app, ["callbacks", "rotate", "-n", "team-a", "--overlap", "2h"], env=env)
    assert rotated.exit_code == 0, rotated.output
    assert f"key {first_id} signs too until" in rotated.output

    both = runner.invoke(app, ["callbacks", "key", "-n", "team-a", "-o", "json"], env=env)
    view = json.loads(both.output)
    assert view["namespace"] == "team-a" and len(view["keys"]) == 2
    assert view["keys"][1]["secret"] == first_secret and view["keys"][1]["notAfter"]

    elsewhere = runner.invoke(app, ["callbacks", "key", "--dir", str(tmp_path / "mounted")], env=env)
    assert elsewhere.exit_code == 0 and (tmp_path / "mounted" / "default.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["callbacks", "key", "-n", "Bad_Name"], "namespace"),
        (["callbacks", "rotate", "--overlap", "soon"], "--overlap"),
    ],
)
def test_lf_callbacks_refuses_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args, env={"LF_STATE_DIR": str(tmp_path)})
    assert result.exit_code == 2 and message in result.output


def test_rotated_is_the_pure_form_of_rotate() -> None:
    fresh, keys = callbackkeys.rotated([Key("old", SECRET, NOW - 10)], overlap_s=60, now=NOW)
    assert [k.id for k in keys] == ["old", fresh.id] and keys[0].not_after == NOW + 60
    with pytest.raises(CallbackKeyError, match="negative"):
        callbackkeys.rotated([], overlap_s=-1, now=NOW)
