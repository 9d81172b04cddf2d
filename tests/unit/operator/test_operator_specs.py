"""Parsing custom resources at the edge: what the operator refuses, with messages that name the field."""

from __future__ import annotations

from typing import Any

import pytest
from lf_controlplane.operator.specs import InvalidSpec, parse_function, parse_trigger


def body(spec: dict[str, Any], name: str = "hello") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "uid": "u", "generation": 1}, "spec": spec}


FILES = {"source": {"files": {"handler.py": ""}}}

INVALID = {
    "no code": ({}, "set source"),
    "git source not served yet": ({"source": {"git": {"url": "https://x"}}}, "only inline files"),
    "bad timeout": ({**FILES, "timeout": "soon"}, "spec.timeout"),
    "bad handler": ({**FILES, "handler": "handle"}, "spec.handler"),
    "unknown field": ({**FILES, "replicaz": 2}, "replicaz"),
    "wrong type": ({**FILES, "concurrency": "many"}, "concurrency"),
}


@pytest.mark.parametrize(("spec", "message"), INVALID.values(), ids=INVALID.keys())
def test_invalid_function_specs(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        parse_function(body(spec))


def test_invalid_name() -> None:
    with pytest.raises(InvalidSpec, match="metadata.name"):
        parse_function(body(FILES, name="Hello_World"))


def test_defaults_added_by_the_apiserver_parse() -> None:
    fn = parse_function(body({**FILES, "runtime": "python", "timeout": "60s", "concurrency": 16, "scaling": {}}))
    assert (fn.function.timeout_s, fn.generation, fn.uid) == (60.0, 1, "u")


def test_invalid_trigger() -> None:
    with pytest.raises(InvalidSpec, match="exactly one"):
        parse_trigger(body({"function": "hello"}))


def test_go_and_rust_need_an_image() -> None:
    with pytest.raises(InvalidSpec, match="spec.image"):
        parse_function(body({**FILES, "runtime": "go"}))
