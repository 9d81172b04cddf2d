"""A pure-Python router with the native one's matching rules (segment trie: literal > {param} > {*rest}), the
baseline the micro-benchmark compares the Rust table against. A fair one: dict lookups per segment, no regex."""

from __future__ import annotations

from typing import Any


class _Node:
    __slots__ = ("catch_all", "children", "param", "param_name", "targets")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.param: _Node | None = None
        self.param_name = ""
        self.catch_all: tuple[str, dict[str, Any]] | None = None
        self.targets: dict[str, Any] = {}


class PyRouter:
    def __init__(self, functions: list[tuple[str, str, Any]], routes: list[tuple[str, str, str, Any]]) -> None:
        self.functions = {(ns, name): target for ns, name, target in functions}
        self.root = _Node()
        for methods, _host, pattern, target in routes:
            self._add(methods, pattern, target)

    def _add(self, methods: str, pattern: str, target: Any) -> None:
        node = self.root
        for segment in pattern.strip("/").split("/"):
            if segment.startswith("{*"):
                node.catch_all = (segment[2:-1], {m: target for m in methods.split(",")})
                return
            if segment.startswith("{"):
                if node.param is None:
                    node.param = _Node()
                node.param_name = segment[1:-1]
                node = node.param
            else:
                node = node.children.setdefault(segment, _Node())
        for method in methods.split(","):
            node.targets[method] = target

    def lookup(self, method: str, host: str, path: str) -> tuple[Any, str, list[tuple[str, str]]]:
        if path.startswith("/function/"):
            head, _, rest = path[10:].partition("/")
            name, _, ns = head.partition(".")
            target = self.functions.get((ns or "default", name))
            if target is not None:
                return target, "/" + rest if rest else "", []
        params: list[tuple[str, str]] = []
        found = self._walk(self.root, path.strip("/").split("/"), 0, method, params)
        if found is None:
            raise LookupError(path)
        return found, path, params

    def _walk(self, node: _Node, segments: list[str], i: int, method: str, params: list[tuple[str, str]]) -> Any:
        if i == len(segments):
            return node.targets.get(method, node.targets.get("*"))
        child = node.children.get(segments[i])
        if child is not None:
            found = self._walk(child, segments, i + 1, method, params)
            if found is not None:
                return found
        if node.param is not None and segments[i]:
            params.append((node.param_name, segments[i]))
            found = self._walk(node.param, segments, i + 1, method, params)
            if found is not None:
                return found
            params.pop()
        if node.catch_all is not None:
            name, targets = node.catch_all
            target = targets.get(method, targets.get("*"))
            if target is not None:
                params.append((name, "/".join(segments[i:])))
                return target
        return None
