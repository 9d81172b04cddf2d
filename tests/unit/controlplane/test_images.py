"""Reproducible layers and OCI layouts (lf_controlplane.images): same inputs, same digests; what would differ between
two machines (timestamps, owners' names, walk order, gzip headers) does not reach the bytes."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest
from lf_controlplane.images.layers import Entry, LayerError, entries_from_dir, members, with_parents, write_layer
from lf_controlplane.images.layout import MANIFEST, REF_ANNOTATION, Layout, LayoutError, Runtime


def function_folder(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "handler.py").write_text("def handle(req):\n    return 'hi'\n")
    (root / "pkg" / "util.py").write_text("X = 1\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "link").symlink_to("handler.py")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"\x00")
    return root


def test_the_same_files_give_the_same_layer_whatever_their_timestamps(tmp_path: Path) -> None:
    folder = function_folder(tmp_path / "fn")
    first = write_layer(entries_from_dir(folder, "function", exclude=["__pycache__"]), tmp_path / "a")
    for path in folder.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000), follow_symlinks=False)
    second = write_layer(entries_from_dir(folder, "function", exclude=["__pycache__"]), tmp_path / "b")
    assert (first.digest, first.diff_id, first.size) == (second.digest, second.diff_id, second.size)
    assert first.blob.read_bytes() == second.blob.read_bytes()
    (folder / "pkg" / "util.py").write_text("X = 2\n")
    third = write_layer(entries_from_dir(folder, "function", exclude=["__pycache__"]), tmp_path / "c")
    assert third.digest != first.digest and third.diff_id != first.diff_id


def test_members_are_sorted_numeric_owned_timeless_and_have_their_parents(tmp_path: Path) -> None:
    folder = function_folder(tmp_path / "fn")
    layer = write_layer(
        entries_from_dir(folder, "srv/function", uid=65532, gid=65532, exclude=["__pycache__"]), tmp_path
    )
    got = list(members(layer.blob))
    names = [m.name for m in got]
    assert names == sorted(names)
    assert names[:2] == ["srv", "srv/function"]  # the missing parent is added, root-owned
    assert "srv/function/__pycache__" not in names
    by_name = {m.name: m for m in got}
    assert (by_name["srv"].uid, by_name["srv"].mode) == (0, 0o755)
    assert all(m.mtime == 0 and m.uname == "" and m.gname == "" for m in got)
    handler = by_name["srv/function/handler.py"]
    assert (handler.uid, handler.gid, handler.mode) == (65532, 65532, 0o644)
    assert by_name["srv/function/run.sh"].mode == 0o755
    assert by_name["srv/function/link"].issym() and by_name["srv/function/link"].linkname == "handler.py"
    with tarfile.open(layer.blob, "r:gz") as tar:
        extracted = tar.extractfile("srv/function/pkg/util.py")
        assert extracted is not None and extracted.read() == b"X = 1\n"


def test_source_date_epoch_sets_every_timestamp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    layer = write_layer([Entry("etc/motd", data=b"hi\n")], tmp_path)
    assert {m.mtime for m in members(layer.blob)} == {1_700_000_000}


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([Entry("a", data=b"1"), Entry("./a", data=b"2")], "in the layer twice"),
        ([Entry("a", data=b"1"), Entry("a/b", data=b"2")], "is not a directory"),
    ],
)
def test_a_layer_that_cannot_unpack_cleanly_is_refused(entries: list[Entry], message: str) -> None:
    with pytest.raises(LayerError, match=message):
        with_parents(entries)


@pytest.mark.parametrize("path", ["/", "..", "a/../../etc/passwd", "../x"])
def test_paths_outside_the_image_are_refused(path: str) -> None:
    with pytest.raises(LayerError, match="not a path inside the image"):
        Entry(path, data=b"")


def test_an_entry_needs_one_content() -> None:
    with pytest.raises(LayerError, match="exactly one of source or data"):
        Entry("a")
    with pytest.raises(LayerError, match="needs a target"):
        Entry("a", "symlink")


def test_special_files_are_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(LayerError, match="not a regular file"):
        entries_from_dir(tmp_path, "function")


def base_image(tmp_path: Path) -> tuple[Layout, str]:
    layout = Layout.create(tmp_path / "base")
    layer = write_layer([Entry("etc/os-release", data=b"ID=debian\n")], layout.blobs)
    runtime = Runtime(entrypoint=("python", "-m", "lf_runtime"), env=("PATH=/usr/bin", "LF_FUNCTION_DIR=/x"))
    layout.write_image("python", base=None, layers=[layer], runtime=runtime, history=["base"])
    return layout, layer.digest


def test_an_image_on_a_base_is_reproducible_and_reads_back(tmp_path: Path) -> None:
    base, base_layer = base_image(tmp_path)
    digests = []
    for name in ("one", "two"):
        out = Layout.create(tmp_path / name)
        image = base.image("python")
        for descriptor in image.layers:
            out.copy_blob_from(base, descriptor.digest)
        code = write_layer([Entry("function/handler.py", data=b"def handle(r): return 1\n")], out.blobs)
        runtime = image.runtime.with_env({"LF_FUNCTION_DIR": "/function", "LF_FUNCTION": "hello"})
        digests.append(out.write_image("hello:1", base=image, layers=[code], runtime=runtime, history=["code"]))
    assert digests[0].digest == digests[1].digest
    read = Layout.open(tmp_path / "one").image("hello:1")
    assert [d.digest for d in read.layers][0] == base_layer
    assert len(read.layers) == len(read.diff_ids) == 2
    assert read.runtime.env == ("PATH=/usr/bin", "LF_FUNCTION_DIR=/function", "LF_FUNCTION=hello")
    assert read.runtime.entrypoint == ("python", "-m", "lf_runtime")
    assert read.config["created"] == "1970-01-01T00:00:00Z"
    assert [h["created_by"] for h in read.config["history"]] == ["base", "code"]
    index = json.loads((tmp_path / "one" / "index.json").read_text())
    assert [m["annotations"][REF_ANNOTATION] for m in index["manifests"]] == ["hello:1"]
    assert index["manifests"][0]["mediaType"] == MANIFEST


def test_a_tag_written_again_replaces_the_older_image(tmp_path: Path) -> None:
    layout = Layout.create(tmp_path / "l")
    first = write_layer([Entry("a", data=b"1")], layout.blobs)
    second = write_layer([Entry("a", data=b"2")], layout.blobs)
    layout.write_image("t", base=None, layers=[first], runtime=Runtime())
    layout.write_image("u", base=None, layers=[first], runtime=Runtime())
    newer = layout.write_image("t", base=None, layers=[second], runtime=Runtime())
    assert [m.annotations[REF_ANNOTATION] for m in layout.manifests()] == ["t", "u"]
    assert layout.find("t").digest == newer.digest


def test_a_corrupt_or_missing_blob_is_named(tmp_path: Path) -> None:
    layout, layer = base_image(tmp_path)
    blob = layout.blob_path(layer)
    data = blob.read_bytes()
    blob.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    image = layout.image("python")
    with pytest.raises(LayoutError, match=f"blob {layer} does not match"):
        layout.read_blob(image.layers[0])
    with pytest.raises(LayoutError, match="no image tagged 'nope'"):
        layout.image("nope")
    other = Layout.create(tmp_path / "other")
    with pytest.raises(LayoutError, match="is not in the layout"):
        other.write_image("x", base=image, layers=[], runtime=Runtime())
    with pytest.raises(LayoutError, match="not an OCI layout"):
        Layout.open(tmp_path)
    with pytest.raises(LayoutError, match="already holds an OCI layout"):
        Layout.create(tmp_path / "other")
