"""`lf new`: a folder that `lf dev` can serve, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from lf_controlplane.dev.folders import read_folder
from lf_controlplane.scaffolding import ScaffoldError, scaffold
from lf_core.contract.names import InvalidName


def test_new_function_has_a_valid_manifest_and_handler(tmp_path: Path) -> None:
    folder = scaffold("orders", tmp_path)
    found = read_folder(folder)
    assert found.error is None and found.function is not None
    assert found.function.name == "orders"
    compile((folder / "handler.py").read_text(), "handler.py", "exec")


def test_refuses_existing_folder_bad_name_and_unknown_runtime(tmp_path: Path) -> None:
    scaffold("orders", tmp_path)
    with pytest.raises(ScaffoldError, match="already exists"):
        scaffold("orders", tmp_path)
    with pytest.raises(InvalidName):
        scaffold("Orders!", tmp_path)
    with pytest.raises(ScaffoldError, match="cobol"):
        scaffold("x", tmp_path, runtime="cobol")
