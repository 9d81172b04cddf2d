//go:build tools

// Package tools pins the queue-proxy command in go.mod/go.sum (the `tools.go` pattern).
package tools

import _ "knative.dev/serving/cmd/queue"
