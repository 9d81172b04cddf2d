"""Trigger manifests in a function folder, for `lf dev`: a `triggers.yaml` (one or more `---`-separated Trigger
documents) or any `*.trigger.yaml` next to `function.yaml`. Each becomes the LF_ROUTES entry the operator would
write: `tr.{ns}.{name}` for an HTTP Trigger (the ingestor routes it), `et.{ns}.{name}` for a cron or NATS one (the
dispatcher runs it). `metadata.namespace` defaults to the function's, `spec.function` to the folder's function.

Editing these files changes the entries without restarting the function's replicas (`is_trigger_file` keeps them
out of the folder's fingerprint)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from lf_core.contract.routes import (
    HttpTriggerRoute,
    encode_event_trigger_route,
    encode_trigger_route,
    event_trigger_key,
    event_trigger_route,
    trigger_key,
)
from lf_core.contract.specs import Function, ManifestError, Trigger, load_trigger

TRIGGERS_FILE = "triggers.yaml"
TRIGGER_SUFFIX = ".trigger.yaml"


def is_trigger_file(name: str) -> bool:
    return name == TRIGGERS_FILE or name.endswith(TRIGGER_SUFFIX)


def read_triggers(folder: Path, function: Function) -> tuple[list[Trigger], list[str]]:
    """The valid Triggers of `folder`, and a message naming the file and field for each refused one."""
    triggers: list[Trigger] = []
    problems: list[str] = []
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_trigger_file(p.name)) if folder.is_dir() else []
    for path in files:
        try:
            documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
        except (yaml.YAMLError, OSError) as exc:
            problems.append(f"{path}: not readable YAML: {exc}")
            continue
        for i, data in enumerate(documents):
            source = f"{path}" + (f" (document {i + 1})" if len(documents) > 1 else "")
            if not isinstance(data, dict):
                problems.append(f"{source}: a Trigger manifest must be a mapping")
                continue
            try:
                triggers.append(load_trigger(_defaults(data, function), source=source))
            except ManifestError as exc:
                problems.append(str(exc))
    return triggers, problems


def _defaults(data: dict[str, Any], function: Function) -> dict[str, Any]:
    data = dict(data)
    metadata = dict(data.get("metadata") or {})
    metadata.setdefault("namespace", function.namespace)
    data["metadata"] = metadata
    if isinstance(data.get("spec"), dict):
        data["spec"] = {"function": function.name, **data["spec"]}
    return data


def trigger_entries(triggers: Iterable[Trigger]) -> tuple[dict[str, bytes], list[str]]:
    """LF_ROUTES entries of `triggers` (key → value), and a message for each name used twice in a namespace."""
    entries: dict[str, bytes] = {}
    problems: list[str] = []
    for trigger in triggers:
        event = event_trigger_route(trigger)
        if event is not None:
            key, value = event_trigger_key(event), encode_event_trigger_route(event)
        else:
            assert trigger.http is not None
            http = HttpTriggerRoute(
                namespace=trigger.namespace, name=trigger.name, function=trigger.function, path=trigger.http.path,
                host=trigger.http.host, methods=tuple(trigger.http.methods),
            )  # fmt: skip
            key, value = trigger_key(http), encode_trigger_route(http)
        if key in entries:
            problems.append(f"trigger {trigger.name!r} is defined twice in namespace {trigger.namespace!r}")
            continue
        entries[key] = value
    return entries, problems
