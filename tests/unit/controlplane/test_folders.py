"""Finding function folders and reporting broken ones without stopping the others."""

from __future__ import annotations

from pathlib import Path

from lf_controlplane.dev.folders import discover, fingerprint, requirements_digest

MANIFEST = "apiVersion: litefunctions.io/v1alpha1\nkind: Function\nmetadata: {{name: {name}}}\n"


def make(root: Path, name: str, manifest: str | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "function.yaml").write_text(manifest if manifest is not None else MANIFEST.format(name=name))
    (folder / "handler.py").write_text("def handle(req):\n    return 'ok'\n")
    return folder


def test_every_folder_with_a_manifest_is_found_and_tool_state_is_skipped(tmp_path: Path) -> None:
    make(tmp_path, "b")
    make(tmp_path, "a")
    make(tmp_path / ".lf", "hidden")
    make(tmp_path / "group", "c")
    found = discover(tmp_path)
    assert [f.function.name for f in found if f.function] == ["a", "b", "c"]


def test_a_broken_manifest_is_reported_with_its_path(tmp_path: Path) -> None:
    make(tmp_path, "good")
    make(tmp_path, "yaml", "kind: [unclosed")
    make(tmp_path, "spec", MANIFEST.format(name="spec") + "spec: {timeout: forever}\n")
    by_name = {f.path.name: f for f in discover(tmp_path)}
    assert by_name["good"].error is None
    assert by_name["yaml"].function is None and "invalid YAML" in (by_name["yaml"].error or "")
    assert by_name["spec"].function is None
    assert "spec.timeout" in (by_name["spec"].error or "") and "function.yaml" in (by_name["spec"].error or "")


def test_a_field_nothing_serves_stops_the_function_naming_the_field(tmp_path: Path) -> None:
    """Issue 14, item 12: `lf dev` refuses (and reports) a function with `scaling.max`, which nothing acts on yet."""
    make(tmp_path, "bounded", MANIFEST.format(name="bounded") + "spec: {scaling: {max: 5}}\n")
    make(tmp_path, "other")
    by_name = {f.path.name: f for f in discover(tmp_path)}
    assert by_name["bounded"].function is None and by_name["other"].function is not None
    error = by_name["bounded"].error or ""
    assert "bounded/function.yaml: spec.scaling.max: not served yet" in error


def test_fingerprint_changes_with_content_not_with_caches(tmp_path: Path) -> None:
    folder = make(tmp_path, "f")
    before = fingerprint(folder)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"\0")
    assert fingerprint(folder) == before
    (folder / "handler.py").write_text("def handle(req):\n    return 'changed'\n")
    assert fingerprint(folder) != before


def test_requirements_digest_only_when_present(tmp_path: Path) -> None:
    folder = make(tmp_path, "f")
    assert requirements_digest(folder) is None
    (folder / "requirements.txt").write_text("msgspec\n")
    assert requirements_digest(folder) is not None


def test_build_output_does_not_change_the_fingerprint(tmp_path: Path) -> None:
    folder = make(tmp_path, "f")
    before = fingerprint(folder)
    (folder / "target" / "release").mkdir(parents=True)
    (folder / "target" / "release" / "f").write_bytes(b"\x7fELF")
    assert fingerprint(folder) == before
