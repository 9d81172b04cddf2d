"""JSON for the runtime (request bodies, dict/list answers, log lines): msgspec, imported without
`typing_extensions`.

msgspec imports `typing_extensions` when it is installed, only to backport typing features Python 3.11 already
has; in a replica that single import cost 5.9 MiB of RSS (nats + uvloop + the rest of the runtime: ~29 MiB),
against DESIGN §7's budget of 30 MiB for a warm idle replica. So it is hidden while msgspec loads, and msgspec
falls back to `typing`. The handler can still import `typing_extensions` itself.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def _import_msgspec() -> Any:
    if "msgspec" in sys.modules or "typing_extensions" in sys.modules:
        import msgspec

        return msgspec
    sys.modules["typing_extensions"] = None  # type: ignore[assignment]  # makes `import typing_extensions` fail
    try:
        import msgspec
    finally:
        del sys.modules["typing_extensions"]
    return msgspec


_msgspec = _import_msgspec()

DecodeError: type[Exception] = _msgspec.DecodeError
EncodeError: type[Exception] = _msgspec.EncodeError
encode: Callable[[Any], bytes] = _msgspec.json.Encoder().encode
decode: Callable[[bytes], Any] = _msgspec.json.Decoder().decode
# For log lines: an odd value is written as its repr rather than failing.
encode_loose: Callable[[Any], bytes] = _msgspec.json.Encoder(enc_hook=repr).encode
