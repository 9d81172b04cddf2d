"""The chart's tests: helm (built from the Go module proxy into ~/.cache/lf/helm/<version>/ by tools/helm, once),
the chart rendered with the sample values `make images` would write, parsed into objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tools.helm import build, chart


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    """The pinned helm (a cold build takes minutes, under /tmp/lf-cold-build.lock)."""
    return build.ensure()


def parse(rendered: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


@pytest.fixture(scope="session")
def objects(helm_binary: Path) -> list[dict[str, Any]]:
    """Every object `helm template` renders with the sample values, in namespace lf-system."""
    return parse(chart.template())


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]
