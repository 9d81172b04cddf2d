package serving

import (
	"io"

	"litefunctions.io/runtime/envelope"
	"litefunctions.io/runtime/lf"
	"litefunctions.io/runtime/settings"
)

func newBenchReplica(metrics bool) *Replica {
	s := &settings.Settings{Function: "hello", Namespace: "default", Concurrency: 16, QueueDepth: 16,
		MaxResponseBytes: settings.DefaultMaxResponseBytes, StuckLimit: 3}
	if metrics {
		s.MetricsPort = 9
	}
	return NewReplica(s, nil, &Log{out: io.Discard})
}

func benchRequest() *envelope.Request {
	return &envelope.Request{BudgetMS: 60000, CallID: "01JCALLIDXXXXXXXXXXXXXXXXX", Method: "GET", Path: "/"}
}

func benchResponse() *lf.Response { return lf.Text(200, "hello") }
