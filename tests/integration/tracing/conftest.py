"""Fixtures of the tracing suite: the in-process OTLP collector (the broker and `routes` are tests/conftest.py's)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.otlpcollector import Collector


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector.running() as collector:
        yield collector
