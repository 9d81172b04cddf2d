// Models of the OpenFaaS of-watchdog (http mode) and gateway request paths, for bench/peers. The real ones cannot
// be built here: the Go module proxy refuses every github.com/openfaas module (403 "This module version is not
// available"). Our own code, written from reading theirs; see bench/peers/README.md for what is modelled.
module lf.bench/peers/openfaas-model

go 1.26.0

require (
	github.com/google/uuid v1.6.0
	github.com/gorilla/mux v1.8.1
	github.com/prometheus/client_golang v1.25.0
)

require (
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/prometheus/client_model v0.6.3 // indirect
	github.com/prometheus/common v0.72.0 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
