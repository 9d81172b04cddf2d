"""`secret(name)`: a function's secrets, mounted as one file per secret in LF_SECRETS_DIR.

The runtime points this module at `Settings.secrets_dir` at start-up; a handler imported by its own tests falls
back to the LF_SECRETS_DIR variable.
"""

from __future__ import annotations

import os
from pathlib import Path

_secrets_dir: Path | None = None


class SecretNotFoundError(LookupError):
    """The secret is not mounted (or no secrets folder is configured)."""


def configure(secrets_dir: Path | None) -> None:
    """Set the folder `secret()` reads from (the runtime calls this once)."""
    global _secrets_dir
    _secrets_dir = secrets_dir


def secret(name: str) -> str:
    """The value of secret `name`: the text of the file LF_SECRETS_DIR/name, minus one trailing newline.

    Raises:
        SecretNotFoundError: no secrets folder is configured, or it holds no file `name`.
        ValueError: `name` is not a plain file name.
    """
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"secret name {name!r} is not a plain file name")
    folder = _secrets_dir
    if folder is None:
        configured = os.environ.get("LF_SECRETS_DIR", "")
        if not configured:
            raise SecretNotFoundError(f"secret {name!r}: no secrets are configured (LF_SECRETS_DIR is not set)")
        folder = Path(configured)
    path = folder / name
    try:
        value = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        available = sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        raise SecretNotFoundError(
            f"secret {name!r} is not mounted in {str(folder)!r} (available: {', '.join(available) or 'none'})"
        ) from None
    return value[:-2] if value.endswith("\r\n") else value.removesuffix("\n")
