"""`_native.pyi` is the contract other code is typed against; stubtest checks it against the built module."""

import subprocess
import sys


def test_stubtest_finds_no_difference() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "lf_native._native"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
