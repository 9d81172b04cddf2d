"""`promtool check metrics` (Debian's prometheus package, installed by .ci/run) on a /metrics text: the one check
every process's exposition passes (issue #4)."""

from __future__ import annotations

import shutil
import subprocess

PROMTOOL = shutil.which("promtool")


def promtool_check(text: str) -> None:
    """Fail with promtool's complaints unless it accepts `text` (lint warnings included)."""
    assert PROMTOOL is not None, "promtool is not installed (Debian package prometheus)"
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
