# One entry point per action. `make dev` and `make test` are the README's two set-up commands.
.DEFAULT_GOAL := help
SHELL := /bin/bash
UV_RUN := uv run --locked --no-sync

.PHONY: help
help: ## Show the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

.PHONY: install
install: ## Install uv, the Python workspace and the Rust extension (release build)
	@scripts/bootstrap.sh

.PHONY: build-dev
build-dev: ## Rebuild the Rust extension after changing native/
	uv sync --locked --reinstall-package lf-native

.PHONY: dev
dev: install ## Start the platform with the example functions (lf dev examples/)
	$(UV_RUN) lf dev examples/

.PHONY: lint
lint: install ## ruff, mypy (strict), import contracts, rustfmt, clippy
	$(UV_RUN) ruff check .
	$(UV_RUN) ruff format --check .
	$(UV_RUN) mypy
	$(UV_RUN) lint-imports
	cargo fmt --all --check
	cargo clippy -p lf-native --all-targets -- -D warnings
	cargo clippy -p lf-native --all-targets --features python -- -D warnings

.PHONY: test-rust
test-rust: ## Rust unit and integration tests (no interpreter needed)
	cargo test -p lf-native

.PHONY: test-unit
test-unit: install ## Python unit tests (no sockets)
	$(UV_RUN) pytest tests/unit

.PHONY: test-integration
test-integration: install ## Against a real nats-server and real processes
	$(UV_RUN) pytest tests/integration -m integration

.PHONY: test-e2e
test-e2e: install ## `lf dev examples/` as a user runs it, called with httpx and curl
	$(UV_RUN) pytest tests/e2e -m e2e

.PHONY: test
test: lint test-rust test-unit test-integration test-e2e ## The whole suite (what CI runs)
