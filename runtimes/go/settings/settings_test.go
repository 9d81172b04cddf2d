package settings

import (
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	s, err := New([]string{"LF_FUNCTION=hello", "LF_NAMESPACE="})
	if err != nil {
		t.Fatal(err)
	}
	if s.Namespace != "default" || s.Concurrency != 16 || s.QueueDepth != 16 || s.NatsURL != DefaultNatsURL ||
		s.MaxResponseBytes != 6<<20 || s.DrainTimeout != 30*time.Second || s.StuckLimit != 3 ||
		s.MetricsPort != 0 || s.MetricsHost != "127.0.0.1" || !s.LogCapture {
		t.Fatalf("unexpected defaults %+v", s)
	}
}

func TestValues(t *testing.T) {
	s, err := New([]string{
		"LF_FUNCTION=hello", "LF_CONCURRENCY=4", "LF_DRAIN_TIMEOUT=2.5s", "LF_MAX_RESPONSE_BYTES=1_000",
		"LF_NATS_URL=nats://u:p@a:4222, nats://b:4223", "LF_QUEUE_DEPTH=0",
		"LF_METRICS_PORT=9100", "LF_METRICS_HOST=0.0.0.0", "LF_LOG_CAPTURE=0",
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Concurrency != 4 || s.QueueDepth != 0 || s.DrainTimeout != 2500*time.Millisecond || s.MaxResponseBytes != 1000 ||
		s.MetricsPort != 9100 || s.MetricsHost != "0.0.0.0" || s.LogCapture {
		t.Fatalf("unexpected %+v", s)
	}
	if got := RedactedNatsURL(s.NatsURL); got != "nats://a:4222,nats://b:4223" {
		t.Fatalf("redacted %q", got)
	}
}

func TestErrorsNameTheVariable(t *testing.T) {
	for env, variable := range map[string]string{
		"LF_FUNCTION=":             "LF_FUNCTION",
		"LF_FUNCTION=Bad_Name":     "LF_FUNCTION",
		"LF_CONCURRENCY=0":         "LF_CONCURRENCY",
		"LF_CONCURRENCY=x":         "LF_CONCURRENCY",
		"LF_DRAIN_TIMEOUT=-1":      "LF_DRAIN_TIMEOUT",
		"LF_NATS_URL=http://x":     "LF_NATS_URL",
		"LF_MAX_RESPONSE_BYTES=-1": "LF_MAX_RESPONSE_BYTES",
		"LF_CONNECT_TIMEOUT=soon":  "LF_CONNECT_TIMEOUT",
		"LF_METRICS_PORT=70000":    "LF_METRICS_PORT",
		"LF_HEALTH_PORT=70000":     "LF_HEALTH_PORT",
	} {
		environ := []string{"LF_FUNCTION=ok", env}
		if _, err := New(environ); err == nil || !strings.Contains(err.Error(), variable) {
			t.Errorf("%s: expected an error naming %s, got %v", env, variable, err)
		}
	}
}

func TestHealthListener(t *testing.T) {
	s, err := New([]string{"LF_FUNCTION=hello"})
	if err != nil || s.HealthPort != 0 || s.HealthHost != "127.0.0.1" {
		t.Fatalf("defaults: %v %+v", err, s)
	}
	s, err = New([]string{"LF_FUNCTION=hello", "LF_HEALTH_PORT=8081", "LF_HEALTH_HOST=0.0.0.0", "LF_METRICS_PORT=9091"})
	if err != nil || s.HealthPort != 8081 || s.HealthHost != "0.0.0.0" {
		t.Fatalf("set: %v %+v", err, s)
	}
	_, err = New([]string{"LF_FUNCTION=hello", "LF_HEALTH_PORT=9091", "LF_METRICS_PORT=9091"})
	if err == nil || !strings.Contains(err.Error(), "LF_HEALTH_PORT") || !strings.Contains(err.Error(), "own ports") {
		t.Fatalf("the same port for both listeners: %v", err)
	}
}
