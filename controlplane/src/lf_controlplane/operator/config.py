"""The operator's settings, from the environment (all optional; see docs/operations.md "Operator settings")."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

# The Python runtime image that runs inline code (deploy/images/python.Dockerfile built without a FUNCTION);
# Go and Rust functions always name their own image. Not published yet: set LF_RUNTIME_IMAGE_PYTHON.
DEFAULT_IMAGES = {"python": "ghcr.io/litefunctions/runtime-python:0.1.0"}


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
        override = env.get("LF_RUNTIME_IMAGE_PYTHON")
        if override:
            images["python"] = override
        return cls(
            nats_url=env.get("LF_NATS_URL", cls.nats_url),
            function_nats_url=env.get("LF_FUNCTION_NATS_URL", ""),
            public_url=env.get("LF_PUBLIC_URL", cls.public_url),
            images=images,
        )
