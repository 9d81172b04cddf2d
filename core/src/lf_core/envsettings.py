"""Typed reads of `LF_*` environment variables, each failure naming its variable (`LF_X='abc' is not an integer`).

A variable set to "" (or blanks) counts as unset. The processes keep their own settings classes and error types:
`EnvReader(env, SettingsError)` raises the caller's exception class.

| read | accepts |
|---|---|
| `text` | anything, stripped |
| `integer` | decimal, `_` separators allowed (`1_000`), within `low`..`high` (`high=None`: no upper bound) |
| `seconds` | a number with an optional unit `ms`, `s` (the default), `m`, `h`: `500ms`, `5`, `2.5s`, `2m`, `1h` |
| `boolean` | `true`/`false`, `1`/`0`, `yes`/`no`, any case |
| `choice` | one of the allowed values, any case (returned lower-case) |
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_DURATION = re.compile(r"(?P<num>\d+(\.\d+)?)(?P<unit>ms|s|m|h)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


class EnvSettingError(ValueError):
    """A variable is malformed or out of range; the message names it (the default error of `EnvReader`)."""


class EnvReader:
    """Typed access to the variables of `env` (usually `os.environ`; tests pass dicts), raising `error(message)`."""

    def __init__(self, env: Mapping[str, str], error: type[Exception] = EnvSettingError) -> None:
        self._env = env
        self._error = error

    def text(self, key: str, default: str) -> str:
        return self._env.get(key, "").strip() or default

    def integer(self, key: str, default: int, *, low: int, high: int | None = None) -> int:
        raw = self.text(key, "")
        if not raw:
            return default
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            raise self._error(f"{key}={raw!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise self._error(f"{key}={raw!r} is out of range: must be {bounds}")
        return value

    def seconds(self, key: str, default: float, *, positive: bool = False) -> float:
        """Zero is accepted unless `positive`; with `positive` a malformed value is refused as not a positive
        duration too (one message for both)."""
        raw = self.text(key, "")
        if not raw:
            return default
        match = _DURATION.fullmatch(raw)
        if positive and (match is None or float(match["num"]) <= 0):
            raise self._error(f"{key}={raw!r} is not a positive duration (e.g. '10s', '500ms')")
        if match is None:
            raise self._error(f"{key}={raw!r} is not a duration (e.g. '500ms', '5s', '2m')")
        return float(match["num"]) * _UNITS[match["unit"]]

    def boolean(self, key: str, default: bool) -> bool:
        raw = self.text(key, "").lower()
        if not raw:
            return default
        if raw not in _TRUE + _FALSE:
            raise self._error(f"{key}={raw!r} is not a boolean (true or false)")
        return raw in _TRUE

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        raw = self.text(key, default).lower()
        if raw not in allowed:
            raise self._error(f"{key}={raw!r} is not one of {', '.join(allowed)}")
        return raw
