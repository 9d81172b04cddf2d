"""nats-server for the tests: lf_controlplane's NatsServer (the one `lf dev` runs), started on a free loopback port
and stopped when the block ends."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lf_controlplane.natsserver import NatsServer


@contextmanager
def running_nats(state_dir: Path, **options: Any) -> Iterator[NatsServer]:
    """A started NatsServer (`options`: port, jetstream, extra_config); stopped at the end even if a test paused
    it with SIGSTOP."""
    server = NatsServer(state_dir=state_dir, **options).start()
    try:
        yield server
    finally:
        server.signal(signal.SIGCONT)
        server.stop()
