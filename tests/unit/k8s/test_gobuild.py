"""tools/gobuild.py: the logged, measured build every Go build of tools/ runs through, and its lock."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tools import gobuild


def test_a_build_is_logged_command_first_and_measured(tmp_path: Path) -> None:
    log = tmp_path / "thing.build.log"
    measured = gobuild.run_logged(
        ["sh", "-c", "echo compiling; echo done >&2"], cwd=tmp_path, env=os.environ, log=log, label="test"
    )
    assert log.read_text().splitlines() == ["$ sh -c echo compiling; echo done >&2", "compiling", "done"]
    assert measured.seconds >= 0
    if gobuild.TIMER.exists():
        assert measured.peak_rss_kib is not None and measured.peak_rss_kib > 0


def test_a_failed_build_names_its_log_and_shows_its_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "broken.build.log"
    with pytest.raises(gobuild.BuildError, match=r"(?s)test: build failed \(exit 3\); see .*broken\.build\.log.*no go"):
        gobuild.run_logged(["sh", "-c", "echo no go; exit 3"], cwd=tmp_path, env=os.environ, log=log, label="test")


def test_peak_rss_comes_from_times_report() -> None:
    report = "\tUser time (seconds): 1.00\n\tMaximum resident set size (kbytes): 2650112\n"
    assert gobuild.peak_rss_kib(report) == 2650112
    assert gobuild.peak_rss_kib("no report") is None


def test_the_cold_build_lock_lets_one_holder_in_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gobuild, "COLD_BUILD_LOCK", tmp_path / "lock")
    inside = threading.Event()
    order: list[str] = []

    def second() -> None:
        inside.wait(10)
        with gobuild.cold_build_lock():
            order.append("second")

    with gobuild.cold_build_lock():
        thread = threading.Thread(target=second)
        thread.start()
        inside.set()
        thread.join(0.3)  # it must still be waiting for the lock
        assert thread.is_alive()
        order.append("first")
    thread.join(10)
    assert order == ["first", "second"]
