"""`lf new`: a new function folder with a manifest and a handler that runs as is."""

from __future__ import annotations

from pathlib import Path

from lf_core.contract.names import check_name
from lf_core.contract.specs import API_VERSION

RUNTIMES = ("python", "go", "rust")

_MANIFEST = """\
apiVersion: {api_version}
kind: Function
metadata:
  name: {name}
spec:
  runtime: {runtime}
{handler_line}  timeout: 30s
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


_GO_MOD = """\
module {name}

go 1.26

// lf dev and the image build compile this package with the runtime (litefunctions.io/runtime), which is not
// published: they point the module at the runtime of your LiteFunctions checkout.
require litefunctions.io/runtime v0.1.0
"""

_GO_HANDLER = """\
// Package handler is the {name} function: Handle gets each call; ctx ends at the call's deadline.
package handler

import (
	"context"

	"litefunctions.io/runtime/lf"
)

// Handle answers one call. An error is a 500 with its message; a nil Response is a 204.
func Handle(_ context.Context, req *lf.Request) (*lf.Response, error) {{
	if req.Method == "POST" {{
		return lf.JSON(200, map[string]any{{"received": len(req.Body), "path": req.Path}})
	}}
	name := req.Query().Get("name")
	if name == "" {{
		name = "world"
	}}
	return lf.Text(200, "Hello, "+name+", from {name}!\\n"), nil
}}
"""

_CARGO_TOML = """\
[package]
name = "{crate}"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
# lf dev and the image build patch this to the runtime of your LiteFunctions checkout (it is not published).
lf-runtime = "0.1"

[workspace]
"""

_RUST_HANDLER = """\
//! The {name} function: `handle` gets each call (an `async fn` works too).

use lf_runtime::{{Request, Response, Result}};

pub fn handle(req: Request) -> Result<Response> {{
    if req.method == "POST" {{
        return Ok(Response::text(format!("received {{}} bytes on {{}}\\n", req.body.len(), req.path)));
    }}
    let name = req
        .query_pairs()
        .into_iter()
        .find(|(k, _)| k == "name")
        .map_or_else(|| "world".to_owned(), |(_, v)| v);
    Ok(Response::text(format!("Hello, {{name}}, from {name}!\\n")))
}}
"""


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
    handler_line = "  handler: handler.handle\n" if runtime == "python" else ""
    manifest = _MANIFEST.format(api_version=API_VERSION, name=name, runtime=runtime, handler_line=handler_line)
    (folder / "function.yaml").write_text(manifest)
    for path, template in _FILES[runtime].items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(template.format(name=name, crate=name.replace("-", "_")))
    return folder


_FILES = {
    "python": {"handler.py": _HANDLER},
    "go": {"go.mod": _GO_MOD, "handler.go": _GO_HANDLER},
    "rust": {"Cargo.toml": _CARGO_TOML, "src/lib.rs": _RUST_HANDLER},
}
