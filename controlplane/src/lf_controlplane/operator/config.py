"""The operator's settings, from the environment (all optional; see docs/operations.md, "Operator (`lf operator`)")."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from lf_core.asynccalls.streams import stream_replicas

# The Python runtime image that runs inline code (runtime-python of `make images`, tools/images: `python -m
# lf_runtime`, code from the ConfigMap); Go and Rust functions always name their own image (lf deploy --registry).
# Not published: set LF_RUNTIME_IMAGE_PYTHON to the pushed one (REGISTRY/litefunctions/runtime-python@sha256:…).
DEFAULT_IMAGES = {"python": "ghcr.io/litefunctions/runtime-python:0.1.0"}

RUNTIME_METRICS_PORT = 9091
"""The port of a function pod's `/metrics` (LF_METRICS_PORT of the runtime; containerPort `metrics`)."""
RUNTIME_HEALTH_PORT = 8081
"""The port of a function pod's `/readyz` (LF_HEALTH_PORT of the runtime; containerPort `health`, readinessProbe)."""
NAMESPACE_MAX_REPLICAS = 50
"""The default of LF_NAMESPACE_MAX_REPLICAS: replicas all Functions of one namespace may ask for together."""
METRICS_SCRAPERS = "kubernetes.io/metadata.name=monitoring"
"""Namespaces whose pods may scrape function pods: the conventional Prometheus namespace."""

_LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


def parse_selector(text: str, setting: str) -> dict[str, str]:
    """`k=v,k2=v2` as matchLabels ({} for an empty text); ValueError naming `setting` when it is not that."""
    labels: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not _LABEL_KEY.fullmatch(key) or not _LABEL_VALUE.fullmatch(value):
            raise ValueError(f"{setting}: {part!r} is not label=value")
        labels[key] = value
    return labels


@dataclass(frozen=True)
class Scrapers:
    """Who may reach a function pod's metrics port: pods matching `pods` (any pod when empty) in namespaces
    matching `namespaces` ({}: any namespace, from LF_METRICS_SCRAPERS=*; None: nobody, from an empty value)."""

    namespaces: Mapping[str, str] | None = field(
        default_factory=lambda: parse_selector(METRICS_SCRAPERS, "LF_METRICS_SCRAPERS")
    )
    pods: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, namespaces: str, pods: str) -> Scrapers:
        text = namespaces.strip()
        ns = {} if text == "*" else (parse_selector(text, "LF_METRICS_SCRAPERS") if text else None)
        return cls(ns, parse_selector(pods, "LF_METRICS_SCRAPER_PODS"))


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) > 65535:
        raise ValueError(f"{name}={raw!r} is not a port (0-65535)")
    return int(raw)


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise ValueError(f"{name}={raw!r} is not a count (0 or more)")
    return int(raw)


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
    runtime_metrics_port: int = RUNTIME_METRICS_PORT
    """LF_RUNTIME_METRICS_PORT: the function pods' `/metrics` port (0: no metrics port, annotations or rule)."""
    scrapers: Scrapers = field(default_factory=Scrapers)
    """LF_METRICS_SCRAPERS / LF_METRICS_SCRAPER_PODS: who the NetworkPolicy lets reach that port."""
    runtime_health_port: int = RUNTIME_HEALTH_PORT
    """LF_RUNTIME_HEALTH_PORT: the function pods' `/readyz` port, which their readinessProbe asks (never 0)."""
    metrics_port: int = 0
    """LF_OPERATOR_METRICS_PORT: the operator's own `/metrics` (0: off)."""
    metrics_host: str = "0.0.0.0"  # scraped from other pods
    """LF_OPERATOR_METRICS_HOST."""
    stream_replicas: int = 1
    """LF_STREAM_REPLICAS: replicas of LF_ROUTES when the operator is the first to create it."""
    namespace_max_replicas: int = NAMESPACE_MAX_REPLICAS
    """LF_NAMESPACE_MAX_REPLICAS: the replicas the Functions of one namespace may ask for together (0: no cap). A
    Function that would take its namespace over gets Valid=False and its Deployment is left as it is."""

    def __post_init__(self) -> None:
        if not 0 < self.runtime_health_port <= 65535:
            raise ValueError(
                f"LF_RUNTIME_HEALTH_PORT={self.runtime_health_port}: function pods need a readiness port (1-65535)"
            )
        if self.runtime_health_port == self.runtime_metrics_port:
            raise ValueError(
                f"LF_RUNTIME_HEALTH_PORT={self.runtime_health_port} is also LF_RUNTIME_METRICS_PORT: "
                "the runtime's /readyz and /metrics listeners need their own ports"
            )

    @property
    def pod_nats_url(self) -> str:
        return self.function_nats_url or self.nats_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> OperatorConfig:
        """The settings; ValueError on a malformed port, selector or count, or the same port for the function
        pods' `/readyz` and `/metrics` (the operator does not start)."""
        images = dict(DEFAULT_IMAGES)
        override = env.get("LF_RUNTIME_IMAGE_PYTHON")
        if override:
            images["python"] = override
        return cls(
            nats_url=env.get("LF_NATS_URL", cls.nats_url),
            function_nats_url=env.get("LF_FUNCTION_NATS_URL", ""),
            public_url=env.get("LF_PUBLIC_URL", cls.public_url),
            images=images,
            runtime_metrics_port=_port(env, "LF_RUNTIME_METRICS_PORT", RUNTIME_METRICS_PORT),
            runtime_health_port=_port(env, "LF_RUNTIME_HEALTH_PORT", RUNTIME_HEALTH_PORT),
            scrapers=Scrapers.parse(
                env.get("LF_METRICS_SCRAPERS", METRICS_SCRAPERS), env.get("LF_METRICS_SCRAPER_PODS", "")
            ),
            metrics_port=_port(env, "LF_OPERATOR_METRICS_PORT", 0),
            metrics_host=env.get("LF_OPERATOR_METRICS_HOST", cls.metrics_host) or cls.metrics_host,
            stream_replicas=stream_replicas(env),
            namespace_max_replicas=_count(env, "LF_NAMESPACE_MAX_REPLICAS", NAMESPACE_MAX_REPLICAS),
        )
