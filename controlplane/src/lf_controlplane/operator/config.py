"""The operator's settings, from the environment (all optional; see docs/operations.md "Operator settings")."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_IMAGES = {
    "python": "ghcr.io/litefunctions/runtime-python:0.1.0",
    "go": "ghcr.io/litefunctions/runtime-go:0.1.0",
    "rust": "ghcr.io/litefunctions/runtime-rust:0.1.0",
}


@dataclass(frozen=True)
class OperatorConfig:
    nats_url: str = "nats://127.0.0.1:4222"
    """Where the operator writes LF_ROUTES."""
    function_nats_url: str = ""
    """The broker URL the function pods get (LF_NATS_URL); default: nats_url."""
    public_url: str = "http://lf-ingestor.lf-system.svc"
    """Base URL of the ingestors, for status.url."""
    images: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_IMAGES))
    """Default runtime image per runtime, when a Function has no spec.image."""

    @property
    def pod_nats_url(self) -> str:
        return self.function_nats_url or self.nats_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> OperatorConfig:
        images = dict(DEFAULT_IMAGES)
        for runtime in images:
            override = env.get(f"LF_RUNTIME_IMAGE_{runtime.upper()}")
            if override:
                images[runtime] = override
        return cls(
            nats_url=env.get("LF_NATS_URL", cls.nats_url),
            function_nats_url=env.get("LF_FUNCTION_NATS_URL", ""),
            public_url=env.get("LF_PUBLIC_URL", cls.public_url),
            images=images,
        )
