"""A real Zot for the registry client's tests: zot-minimal built by tools/registry (cached under ~/.cache/lf/zot;
a cold build takes ~5 min and holds /tmp/lf-cold-build.lock), started once per session on loopback with htpasswd
auth and stopped (by PID) at the end, even when a test fails."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tools.registry import build
from tools.registry.tokens import TokenServer
from tools.registry.zot import Zot


@pytest.fixture(scope="session")
def zot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zot]:
    binary = build.ensure()
    with Zot(binary, tmp_path_factory.mktemp("zot")).start() as server:
        yield server


@pytest.fixture(scope="session")
def token_zot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Zot, TokenServer]]:
    """A second Zot using the token flow: bearer auth, its realm a TokenServer (tools/registry/tokens.py)."""
    binary = build.ensure()
    folder = tmp_path_factory.mktemp("zot-bearer")
    with TokenServer(folder / "tokens", {}).start() as tokens, Zot(binary, folder, tokens=tokens).start() as server:
        yield server, tokens
