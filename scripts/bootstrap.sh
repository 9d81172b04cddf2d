#!/usr/bin/env bash
# Installs what the two set-up commands need on a fresh clone: uv, then the workspace (Python deps + the Rust
# extension, built in release mode by maturin). Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.8
if ! command -v uv >/dev/null 2>&1; then
  echo "bootstrap: installing uv ${UV_VERSION}"
  python3 -m pip install --quiet "uv==${UV_VERSION}"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "bootstrap: cargo (Rust) is required to build native/; install it with rustup" >&2
  exit 1
fi
uv sync --locked --quiet
