"""load_handler: finding the user's callable, and the errors when it isn't there."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from lf_runtime.handlers import HandlerImportError, HandlerNotFoundError, load_handler


@pytest.fixture(autouse=True)
def clean_imports() -> Iterator[None]:
    """Each test writes its own modules; forget them and the sys.path entries afterwards."""
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


def write(folder: Path, name: str, code: str) -> Path:
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(code)
    return folder


def test_sync_handler(tmp_path: Path) -> None:
    write(tmp_path, "fn_sync.py", "def handle(req):\n    return 'ok'\n")
    handler = load_handler(tmp_path, "fn_sync", "handle")
    assert handler.is_async is False
    assert handler.func(None) == "ok"
    assert handler.name == "fn_sync.handle"


def test_async_handler(tmp_path: Path) -> None:
    write(tmp_path, "fn_async.py", "async def handle(req):\n    return 'ok'\n")
    assert load_handler(tmp_path, "fn_async", "handle").is_async is True


def test_callable_object_with_async_call(tmp_path: Path) -> None:
    code = "class H:\n    async def __call__(self, req):\n        return 1\nhandle = H()\n"
    write(tmp_path, "fn_obj.py", code)
    assert load_handler(tmp_path, "fn_obj", "handle").is_async is True


def test_dotted_module_in_a_package(tmp_path: Path) -> None:
    write(tmp_path, "fnpkg/__init__.py", "")
    write(tmp_path, "fnpkg/main.py", "def run(req):\n    return None\n")
    assert load_handler(tmp_path, "fnpkg.main", "run").name == "fnpkg.main.run"


def test_the_folder_must_exist(tmp_path: Path) -> None:
    with pytest.raises(HandlerNotFoundError, match="LF_FUNCTION_DIR"):
        load_handler(tmp_path / "nope", "handler", "handle")


def test_missing_module(tmp_path: Path) -> None:
    with pytest.raises(HandlerNotFoundError, match="no module 'fn_absent'"):
        load_handler(tmp_path, "fn_absent", "handle")


def test_missing_attribute(tmp_path: Path) -> None:
    write(tmp_path, "fn_noattr.py", "def other(req):\n    pass\n")
    with pytest.raises(HandlerNotFoundError, match="has no attribute 'handle'"):
        load_handler(tmp_path, "fn_noattr", "handle")


def test_not_callable(tmp_path: Path) -> None:
    write(tmp_path, "fn_value.py", "handle = 3\n")
    with pytest.raises(HandlerNotFoundError, match="is a int, not a function"):
        load_handler(tmp_path, "fn_value", "handle")


def test_module_that_raises_on_import(tmp_path: Path) -> None:
    write(tmp_path, "fn_broken.py", "raise RuntimeError('no database')\n")
    with pytest.raises(HandlerImportError, match="RuntimeError: no database") as caught:
        load_handler(tmp_path, "fn_broken", "handle")
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_module_whose_dependency_is_missing_is_an_import_failure(tmp_path: Path) -> None:
    write(tmp_path, "fn_dep.py", "import lf_no_such_dependency\n")
    with pytest.raises(HandlerImportError, match="lf_no_such_dependency"):
        load_handler(tmp_path, "fn_dep", "handle")


def test_syntax_error_is_an_import_failure(tmp_path: Path) -> None:
    write(tmp_path, "fn_syntax.py", "def handle(req:\n")
    with pytest.raises(HandlerImportError, match="SyntaxError"):
        load_handler(tmp_path, "fn_syntax", "handle")
