package serving

import (
	"io"

	"litefunctions.io/runtime/config"
	"litefunctions.io/runtime/envelope"
	"litefunctions.io/runtime/lf"
)

func newBenchReplica(metrics bool) *Replica {
	settings := &config.Settings{Function: "hello", Namespace: "default", Concurrency: 16, QueueDepth: 16,
		MaxResponseBytes: config.DefaultMaxResponseBytes, StuckLimit: 3}
	if metrics {
		settings.MetricsPort = 9
	}
	return NewReplica(settings, nil, &Log{out: io.Discard})
}

func benchRequest() *envelope.Request {
	return &envelope.Request{BudgetMS: 60000, CallID: "01JCALLIDXXXXXXXXXXXXXXXXX", Method: "GET", Path: "/"}
}

func benchResponse() *lf.Response { return lf.Text(200, "hello") }
