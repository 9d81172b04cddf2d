"""Loading the user's handler, and turning what it returns into a status, headers and a body.

Both are pure of any I/O but the import itself. The mapping rules (docs/architecture.md, "Runtimes"):

| returned | status | content type |
|---|---|---|
| `Response` | its own | its own |
| `bytes` / `bytearray` / `memoryview` | 200 | `application/octet-stream` |
| `str` | 200 | `text/plain; charset=utf-8` |
| `dict` / `list` | 200 | `application/json` (msgspec) |
| `None` | 204 | none |

Anything else raises `UnsupportedReturnError`, answered as an INTERNAL error naming the type.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from lf_runtime import jsoncodec
from lf_runtime.requests import Pairs, Response

TEXT = [("content-type", "text/plain; charset=utf-8")]
JSON = [("content-type", "application/json")]
OCTETS = [("content-type", "application/octet-stream")]
NO_HEADERS: Pairs = []


class HandlerNotFoundError(LookupError):
    """LF_HANDLER or LF_FUNCTION_DIR names nothing callable: a configuration error (exit code 2)."""


class HandlerImportError(RuntimeError):
    """The handler's module raised while being imported (exit code 1; `__cause__` holds the error)."""


class UnsupportedReturnError(TypeError):
    """The handler returned something the runtime cannot send."""


class Handler(NamedTuple):
    """The loaded handler: `func(req)` returns the answer, or a coroutine of it when `is_async`."""

    func: Callable[..., Any]
    is_async: bool
    name: str


def load_handler(function_dir: Path, module: str, name: str) -> Handler:
    """Import `module` from `function_dir` (prepended to `sys.path`) and return its callable `name`.

    Raises:
        HandlerNotFoundError: the folder, module or attribute is missing, or the attribute isn't callable.
        HandlerImportError: importing the module raised.
    """
    if not function_dir.is_dir():
        raise HandlerNotFoundError(f"LF_FUNCTION_DIR={str(function_dir)!r} is not a directory")
    folder = str(function_dir.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = f"{module}.{name}"
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module or module.startswith(f"{exc.name}."):  # the module itself, not one it imports
            raise HandlerNotFoundError(f"LF_HANDLER={spec!r}: no module {module!r} in {folder}") from None
        raise HandlerImportError(f"importing {module!r} failed: {exc}") from exc
    except BaseException as exc:
        raise HandlerImportError(f"importing {module!r} failed: {type(exc).__name__}: {exc}") from exc
    func = getattr(loaded, name, None)
    if func is None:
        raise HandlerNotFoundError(f"LF_HANDLER={spec!r}: module {module!r} has no attribute {name!r}")
    if not callable(func):
        raise HandlerNotFoundError(f"LF_HANDLER={spec!r} is a {type(func).__name__}, not a function")
    return Handler(func, _is_async(func), spec)


def _is_async(func: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - an object whose __call__ is `async def`
    return call is not None and inspect.iscoroutinefunction(call)


def to_parts(value: object) -> tuple[int, Pairs, bytes]:
    """Map a handler's return value to `(status, headers, body)`.

    Raises:
        UnsupportedReturnError: the type is not one of the table's, or a `Response` carries a bad status or body.
    """
    cls = type(value)
    if cls is str:
        return 200, TEXT, value.encode()  # type: ignore[attr-defined]
    if cls is bytes:
        return 200, OCTETS, value  # type: ignore[return-value]
    if cls is dict or cls is list:
        return 200, JSON, _encode_json(value)
    if value is None:
        return 204, NO_HEADERS, b""
    if isinstance(value, Response):
        return _response_parts(value)
    if isinstance(value, bytearray | memoryview):
        return 200, OCTETS, bytes(value)
    if isinstance(value, str):
        return 200, TEXT, value.encode()
    if isinstance(value, dict | list):
        return 200, JSON, _encode_json(value)
    raise UnsupportedReturnError(
        f"handler returned {_type_name(value)}; expected Response, bytes, str, dict, list or None"
    )


def _response_parts(response: Response) -> tuple[int, Pairs, bytes]:
    status = response.status
    if type(status) is not int:
        if not isinstance(status, int) or isinstance(status, bool):
            raise UnsupportedReturnError(f"Response.status is {_type_name(status)}; expected an int")
        status = int(status)  # HTTPStatus and other int enums
    if not 100 <= status <= 599:
        raise UnsupportedReturnError(f"Response.status {status!r} is not an HTTP status code (100-599)")
    body: object = response.body
    if type(body) is not bytes:
        if isinstance(body, str):
            body = body.encode()
        elif isinstance(body, bytearray | memoryview):
            body = bytes(body)
        else:
            raise UnsupportedReturnError(f"Response.body is {_type_name(body)}; expected bytes or str")
    return status, response.headers, body


def _encode_json(value: object) -> bytes:
    try:
        return jsoncodec.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise UnsupportedReturnError(
            f"handler returned a {_type_name(value)} that is not JSON-serializable: {exc}"
        ) from None


def _type_name(value: object) -> str:
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
