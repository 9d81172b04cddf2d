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

.PHONY: build-native
build-native: ## Rebuild the Rust extension (lf_native) after changing native/
	uv sync --locked --reinstall-package lf-native

.PHONY: dev
dev: install ## Start the platform with the example functions (lf dev examples/)
	$(UV_RUN) lf dev examples/

.PHONY: lint
lint: install ## ruff, mypy (strict), import contracts, rustfmt, clippy, gofmt, go vet
	$(UV_RUN) ruff check .
	$(UV_RUN) ruff format --check .
	$(UV_RUN) mypy
	$(UV_RUN) lint-imports
	cargo fmt --all --check
	cargo clippy -p lf-native --all-targets -- -D warnings
	cargo clippy -p lf-native --all-targets --features python -- -D warnings
	cargo clippy -p lf-runtime --all-targets -- -D warnings
	@cd runtimes/go && unformatted="$$(gofmt -l .)" && if [ -n "$$unformatted" ]; then echo "gofmt wants: $$unformatted"; exit 1; fi
	cd runtimes/go && go vet ./...
	@cd tools/k8s/testimages && unformatted="$$(gofmt -l .)" && if [ -n "$$unformatted" ]; then echo "gofmt wants: $$unformatted"; exit 1; fi
	cd tools/k8s/testimages && go vet ./...

.PHONY: test-rust
test-rust: ## Rust tests: the native core (lf-native) and the Rust runtime (lf-runtime)
	cargo test -p lf-native
	cargo test -p lf-runtime

.PHONY: test-go
test-go: ## Go tests: the Go runtime (runtimes/go)
	cd runtimes/go && go test ./...

.PHONY: test-unit
test-unit: install ## Python unit tests (no sockets)
	$(UV_RUN) pytest tests/unit

.PHONY: test-integration
test-integration: install ## Against a real nats-server, redis-server and real processes (images and Zot: test-images)
	$(UV_RUN) pytest tests/integration -m integration --ignore=tests/integration/images --ignore=tests/integration/registry

.PHONY: test-images
test-images: install ## Every platform image built twice (same digests) and run from the outside; Zot
	$(UV_RUN) python -m tools.registry build  # zot-minimal from ../shared/vendor/zot (cold 3-5 min, cached in ~/.cache/lf/zot)
	$(UV_RUN) pytest tests/integration/images tests/integration/registry -m integration

.PHONY: registry
registry: install ## Zot on loopback with htpasswd auth, in the foreground (prints its address and REGISTRY_AUTH_FILE)
	$(UV_RUN) python -m tools.registry start

.PHONY: test-e2e
test-e2e: install ## `lf dev examples/` as a user runs it, called with httpx and curl
	$(UV_RUN) python -m lf_controlplane.dev.builds examples/hello-go examples/hello-rust  # warm the build cache
	$(UV_RUN) pytest tests/e2e -m e2e

.PHONY: test-conformance
test-conformance: install ## The runtime conformance suite: Python, Go and Rust behind the real ingestor and NATS
	$(UV_RUN) pytest runtimes/conformance -m conformance

.PHONY: test-operator
test-operator: install ## The operator against a real kube-apiserver + etcd (built once from the Go module proxy, cached)
	$(UV_RUN) python -m tools.k8s build
	$(UV_RUN) python -m tools.helm build  # the operator's RBAC comes from the chart
	$(UV_RUN) pytest tests/operator -m operator

.PHONY: images
images: install ## Every platform image, built without Docker (tools/images): dist/images/{oci,images.json,values.yaml}
	$(UV_RUN) python -m tools.images build --out dist/images

.PHONY: cluster-build
cluster-build: install ## The single node's binaries into ~/.cache/lf/k8s (cold 11-17 min on 2 cores, warm 1 s)
	$(UV_RUN) python -m tools.k8s build --node

.PHONY: cluster
cluster: cluster-build ## A single-node Kubernetes in the background (root); prints export KUBECONFIG=...
	@mkdir -p .lf
	$(UV_RUN) python -m tools.k8s node --detach --state-file .lf/node.json

.PHONY: cluster-down
cluster-down: ## Stop exactly what `make cluster` started, then check the machine is as it was
	$(UV_RUN) python -m tools.k8s node-down --state-file .lf/node.json

.PHONY: test-cluster
test-cluster: cluster-build ## On a real node + Zot (root): the node itself, then the chart installed and functions deployed (tests/cluster)
	$(UV_RUN) python -m tools.registry build
	$(UV_RUN) python -m tools.helm build
	$(UV_RUN) pytest tests/cluster -m cluster

.PHONY: helm
helm: install ## helm v4 from the Go module proxy into ~/.cache/lf/helm/<version>/ (cold 2-3.5 min, 1 GiB)
	$(UV_RUN) python -m tools.helm build

.PHONY: test-chart
test-chart: install ## The Helm chart: lint, rendered objects, its nats.conf as a 3-server cluster, dry run + install against a real kube-apiserver
	$(UV_RUN) python -m tools.helm build
	$(UV_RUN) python -m tools.k8s build
	$(UV_RUN) pytest tests/chart

.PHONY: bench-gate
bench-gate: install ## The short latency gate against bench/budgets.toml (needs wrk)
	$(UV_RUN) python -m bench gate

.PHONY: bench
bench: install ## All load scenarios against the canary (see docs/performance.md)
	$(UV_RUN) python -m bench run --json bench-results.json

.PHONY: bench-peers
bench-peers: install ## OpenFaaS, Knative queue-proxy and uvicorn serving the same handler
	$(UV_RUN) python -m bench peers

.PHONY: bench-observability
bench-observability: install ## sync-hello with metrics off / on / on + tracing (every call, 1% sampled), interleaved
	$(UV_RUN) python -m bench observability

.PHONY: bench-runtimes
bench-runtimes: install ## Python, Go and Rust replicas: e2e and per-call CPU, ratios to Python (issue 6)
	$(UV_RUN) python -m bench runtimes

.PHONY: bench-micro
bench-micro: install ## Micro-benchmarks: native router and envelope against Python baselines
	$(UV_RUN) pytest bench/micro --benchmark-only -p no:cacheprovider

# The tiers of `make test`, in order; .ci/run times each one (DEVELOPMENT.md, "CI ledger").
TEST_TIERS := lint test-rust test-go test-unit test-images test-integration test-conformance test-e2e test-operator test-chart test-cluster bench-gate

.PHONY: test
test: $(TEST_TIERS) ## The whole suite and the bench gate (what CI runs)

.PHONY: test-tiers
test-tiers: ## Print the tiers `make test` runs
	@echo $(TEST_TIERS)
