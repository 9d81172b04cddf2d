"""`lf new`: a new function folder with a manifest and a handler that runs as is."""

from __future__ import annotations

from pathlib import Path

from lf_dataplane.names import check_name
from lf_dataplane.specs import API_VERSION

RUNTIMES = ("python",)

_MANIFEST = """\
apiVersion: {api_version}
kind: Function
metadata:
  name: {name}
spec:
  runtime: python
  handler: handler.handle
  timeout: 30s
  concurrency: 16
  # env: {{GREETING: hello}}
  # secrets: [api-token]        # lf dev reads .secrets/api-token beside your functions
  # limits: {{requestBody: 6Mi, responseBody: 6Mi}}
"""

_HANDLER = '''\
"""The {name} function. `handle` gets each call's request; return a Response, bytes, str, dict or list."""

from lf_runtime import Request, Response


def handle(req: Request) -> Response | dict[str, object]:
    if req.method == "POST":
        return {{"received": len(req.body), "path": req.path}}
    name = req.query_params.get("name", "world")
    return Response(f"Hello, {{name}}, from {name}!\\n", content_type="text/plain; charset=utf-8")
'''


class ScaffoldError(ValueError):
    pass


def scaffold(name: str, parent: Path, runtime: str = "python") -> Path:
    """Create `parent/name/` with function.yaml and a handler. Refuses to touch an existing folder."""
    check_name(name)
    if runtime not in RUNTIMES:
        raise ScaffoldError(f"runtime {runtime!r} is not available yet; choose one of {', '.join(RUNTIMES)}")
    folder = parent / name
    if folder.exists():
        raise ScaffoldError(f"{folder} already exists; choose another name or remove it")
    folder.mkdir(parents=True)
    (folder / "function.yaml").write_text(_MANIFEST.format(api_version=API_VERSION, name=name))
    (folder / "handler.py").write_text(_HANDLER.format(name=name))
    return folder
