"""The CustomResourceDefinitions, generated from the msgspec models that define `function.yaml`.

    python -m lf_controlplane.operator.crds [--check] [DIR]   # writes DIR (default: the chart's crds/)

msgspec's JSON Schema is turned into a structural OpenAPI v3 schema: `$ref`s inlined, `X | None` becomes X (the
apiserver drops nulls of non-nullable fields), `str | int` and durations become `x-kubernetes-int-or-string` with
a CEL rule for their format, enums get `type: string`, `additionalProperties: false` goes (pruning and kubectl's
strict field validation refuse unknown fields instead), empty-container defaults go (they would be persisted).
Rules a schema cannot say are CEL rules (`x-kubernetes-validations`), listed per model below.
"""

from __future__ import annotations

import copy
import inspect
import sys
from pathlib import Path
from typing import Any

import msgspec
import yaml
from lf_core.contract import specs

from lf_controlplane.operator.status import FunctionStatus, TriggerStatus

GROUP = "litefunctions.io"
VERSION = "v1alpha1"

_DURATION_RULE = {
    "rule": "type(self) == int ? self > 0 : self.matches('^[0-9]+(\\\\.[0-9]+)?(ms|s|m|h)$')",
    "message": "must be a duration such as '500ms', '30s', '2m' or a positive number of seconds",
}
_SIZE_RULE = {
    "rule": "type(self) == int ? self > 0 : self.matches('^[0-9]+(Ki|Mi|Gi|k|M|G)?$')",
    "message": "must be a size such as '6Mi', '64Ki' or a positive number of bytes",
}


def _exactly_one(*fields: str) -> dict[str, str]:
    has = ", ".join(f"has(self.{f})" for f in fields)
    return {"rule": f"[{has}].filter(x, x).size() == 1", "message": f"set exactly one of {', '.join(fields)}"}


def _quantities(field: str) -> dict[str, str]:
    return {
        "rule": f"!has(self.{field}) || self.{field}.all(k, isQuantity(string(self.{field}[k])))",
        "message": f"{field} values must be Kubernetes quantities such as '100m' or '128Mi'",
    }


# CEL rules per model (by its title in the JSON Schema).
RULES: dict[str, list[dict[str, str]]] = {
    "FunctionSpec": [
        {
            "rule": "!has(self.handler) || self.handler.contains('.') || self.handler.contains(':')",
            "message": "handler must name 'module.function'",
        },
        {
            "rule": "!has(self.traffic) || self.traffic.map(t, t.percent).sum() == 100",
            "message": "traffic percents must add up to 100",
        },
        {
            "rule": "!has(self.traffic) || self.traffic.all(t, has(self.versions) && "
            "self.versions.exists(v, v.name == t.version))",
            "message": "traffic may only name versions declared in spec.versions",
        },
    ],
    "Scaling": [
        {"rule": "!has(self.max) || self.min <= self.max", "message": "scaling.min must not exceed scaling.max"}
    ],
    "Source": [_exactly_one("files", "archive", "git")],
    "Resources": [_quantities("requests"), _quantities("limits")],
    "TriggerSpec": [_exactly_one("http", "cron", "nats")],
}

# Lists whose items are keyed (apply merges them by key, duplicates are refused).
LIST_MAPS = {"versions": ["name"], "traffic": ["version"], "conditions": ["type"]}
LIST_SETS = {"secrets", "methods", "vary", "roles"}


def _description(text: str) -> str:
    return inspect.cleandoc(text).replace("\n", " ")


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict) and "$ref" in node:
        return _resolve(defs[node["$ref"].rsplit("/", 1)[1]], defs)
    return node


def _union(options: list[dict[str, Any]], defs: dict[str, Any]) -> dict[str, Any]:
    options = [_resolve(o, defs) for o in options if o.get("type") != "null"]
    if len(options) == 1:
        return dict(options[0])
    types = sorted(o.get("type", "") for o in options)
    # maxLength bounds the CEL rules' estimated cost (the apiserver refuses unbounded ones).
    if types == ["number", "string"]:
        return {"x-kubernetes-int-or-string": True, "maxLength": 32, "x-kubernetes-validations": [_DURATION_RULE]}
    if types == ["integer", "string"]:
        return {"x-kubernetes-int-or-string": True, "maxLength": 64}
    raise ValueError(f"no structural form for the union {options}")


def structural(node: dict[str, Any], defs: dict[str, Any], name: str = "") -> dict[str, Any]:
    """A structural OpenAPI v3 schema of a msgspec JSON Schema node (see the module docstring)."""
    node = _resolve(node, defs)
    extra = {k: v for k, v in node.items() if k in ("default", "description")}
    if "anyOf" in node:
        node = {**_union(node["anyOf"], defs), **extra}
        if "x-kubernetes-int-or-string" in node:
            return _finish(node, name)
    out: dict[str, Any] = {}
    if "description" in node:
        out["description"] = _description(node["description"])
    if "enum" in node:
        out["type"] = "string"
        out["enum"] = list(node["enum"])
    elif "type" in node:
        out["type"] = node["type"]
    out.update(_bounds(node))
    if out.get("type") == "object":
        out.update(_object(node, defs))
    if out.get("type") == "array":
        out.update(_array(node, defs, name))
    if "default" in node:
        out["default"] = node["default"]
    if node.get("title") in RULES:
        out["x-kubernetes-validations"] = copy.deepcopy(RULES[node["title"]])
    return _finish(out, name)


def _bounds(node: dict[str, Any]) -> dict[str, Any]:
    keys = ("minimum", "maximum", "minLength", "maxLength", "pattern", "minItems", "maxItems", "maxProperties")
    out = {key: node[key] for key in keys if key in node}
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if exclusive in node:  # JSON Schema 2020's number → OpenAPI v3.0's boolean
            out[bound] = node[exclusive]
            out[exclusive] = True
    return out


def _object(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "properties" in node:
        out["properties"] = {k: structural(v, defs, k) for k, v in node["properties"].items()}
        if node.get("required"):
            out["required"] = list(node["required"])
    elif isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = structural(node["additionalProperties"], defs)
    return out


def _array(node: dict[str, Any], defs: dict[str, Any], name: str) -> dict[str, Any]:
    out: dict[str, Any] = {"items": structural(node["items"], defs)}
    if name in LIST_MAPS:
        out["x-kubernetes-list-type"] = "map"
        out["x-kubernetes-list-map-keys"] = LIST_MAPS[name]
    elif name in LIST_SETS:
        out["x-kubernetes-list-type"] = "set"
    return out


def _finish(out: dict[str, Any], name: str) -> dict[str, Any]:
    if out.get("x-kubernetes-int-or-string") and name in ("requestBody", "responseBody"):
        out["x-kubernetes-validations"] = [_SIZE_RULE]
    if "default" in out and out["default"] in (None, [], {}):
        del out["default"]
    return out


def schema_of(model: type) -> dict[str, Any]:
    raw = msgspec.json.schema(model)
    return structural(raw, raw.get("$defs", {}))


def _without_defaults(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_defaults(v) for k, v in node.items() if k != "default"}
    if isinstance(node, list):
        return [_without_defaults(v) for v in node]
    return node


def _status_schema(model: type) -> dict[str, Any]:
    schema: dict[str, Any] = _without_defaults(schema_of(model))  # the operator writes status whole
    # kopf may keep its own bookkeeping under status (status.kopf); the fields we own stay typed.
    schema["x-kubernetes-preserve-unknown-fields"] = True
    return schema


def _root(spec: dict[str, Any], status: dict[str, Any], spec_required: bool) -> dict[str, Any]:
    root: dict[str, Any] = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    if spec_required:
        root["required"] = ["spec"]
    else:
        spec["default"] = {}
    return root


def _crd(
    kind: str, plural: str, short: str, schema: dict[str, Any], columns: list[dict[str, Any]], scale: bool
) -> dict[str, Any]:
    subresources: dict[str, Any] = {"status": {}}
    if scale:
        subresources["scale"] = {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "litefunctions"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                "categories": ["litefunctions"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": subresources,
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


def _column(name: str, path: str, type_: str = "string", priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path}
    if priority:
        column["priority"] = priority
    return column


def function_crd() -> dict[str, Any]:
    # A Function without a spec has no code (no source, no image): required here, though function.yaml may omit it.
    schema = _root(schema_of(specs.FunctionSpec), _status_schema(FunctionStatus), spec_required=True)
    schema["description"] = "A function: code, its runtime and how it is served and scaled."
    columns = [
        _column("Runtime", ".spec.runtime"),
        _column("Phase", ".status.phase"),
        _column("Replicas", ".status.replicas", "integer"),
        _column("Ready", ".status.readyReplicas", "integer"),
        _column("URL", ".status.url"),
        _column("Age", ".metadata.creationTimestamp", "date"),
    ]
    return _crd("Function", "functions", "lffn", schema, columns, scale=True)


def trigger_crd() -> dict[str, Any]:
    schema = _root(schema_of(specs.TriggerSpec), _status_schema(TriggerStatus), spec_required=True)
    schema["description"] = "What calls a function besides its own URL: an HTTP route, a cron schedule or a subject."
    columns = [
        _column("Function", ".spec.function"),
        _column("Host", ".spec.http.host"),
        _column("Path", ".spec.http.path"),
        _column("Schedule", ".spec.cron.schedule", priority=1),
        _column("Subject", ".spec.nats.subject", priority=1),
        _column("Last Fire", ".status.lastFire", priority=1),
        _column("Phase", ".status.phase"),
        _column("Age", ".metadata.creationTimestamp", "date"),
    ]
    return _crd("Trigger", "triggers", "lftr", schema, columns, scale=False)


HEADER = "# Generated from the msgspec models (lf_core.contract.specs) by `python -m lf_controlplane.operator.crds`.\n"
HEADER += "# Do not edit: change the models and regenerate (tests/unit/operator/test_crds.py checks for drift).\n"


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def rendered() -> dict[str, str]:
    """File name → YAML text of every CRD."""
    files = {}
    for crd in (function_crd(), trigger_crd()):
        text = yaml.dump(crd, Dumper=_NoAliases, sort_keys=False, width=120, allow_unicode=True)
        files[f"{crd['metadata']['name']}.yaml"] = HEADER + text
    return files


CHART_CRDS = Path("deploy/helm/litefunctions/crds")
"""The one copy of the CRDs: the Helm chart's crds/ (helm installs them before the chart's templates)."""


def main(argv: list[str]) -> int:
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    folder = Path(args[0]) if args else CHART_CRDS
    stale = []
    for name, text in rendered().items():
        path = folder / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"out of date (run python -m lf_controlplane.operator.crds): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
