"""lf dev shows its children's JSON log lines human-readably; anything else as it came."""

from __future__ import annotations

import pytest
from lf_controlplane.dev.supervising import human, print_line


def test_a_json_event_becomes_time_level_event_and_fields() -> None:
    line = (
        '{"ts":"2026-11-29T01:02:03.456Z","level":"info","event":"ready","function":"hello",'
        '"subject":"lf.invoke.default.hello","concurrency":16,"ok":true,"note":"two words"}'
    )
    assert human(line) == (
        '01:02:03 info ready function=hello subject=lf.invoke.default.hello concurrency=16 ok=true note="two words"'
    )


def test_the_ingestors_iso_offset_timestamp_and_a_traceback_on_its_own_lines() -> None:
    line = (
        '{"ts":"2026-11-29T01:02:03.456+00:00","level":"error","event":"call_failed","call_id":"c1",'
        '"traceback":"Traceback (most recent call last):\\n  boom\\n"}'
    )
    assert human(line) == "01:02:03 error call_failed call_id=c1\nTraceback (most recent call last):\n  boom"


@pytest.mark.parametrize(
    "line", ["printed by the handler", "{not json", '{"no_event": 1}', "[1, 2]", "", '{"a": "}'], ids=repr
)
def test_other_lines_pass_through(line: str) -> None:
    assert human(line) == line


def test_print_line_labels_every_line(capsys: pytest.CaptureFixture[str]) -> None:
    print_line("fn-1.0", '{"ts":"2026-11-29T01:02:03Z","level":"error","event":"x","traceback":"a\\nb"}')
    out = capsys.readouterr().out.splitlines()
    assert [line.split(" | ", 1)[1] for line in out] == ["01:02:03 error x", "a", "b"]
    assert all(line.split(" | ", 1)[0].strip() == "fn-1.0" for line in out)
