package serving

import (
	"io"
	"math"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func scrape(t *testing.T, c *collector) string {
	t.Helper()
	handler, err := metricsHandler(c)
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	handler.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		t.Fatalf("status %d, content type %q", w.Code, w.Header().Get("Content-Type"))
	}
	body, _ := io.ReadAll(w.Body)
	return string(body)
}

func TestCollectorExportsThePythonRuntimesFamilies(t *testing.T) {
	m := &Metrics{}
	m.Ran(OutcomeOK, 300*time.Microsecond)
	m.Ran(OutcomeOK, time.Millisecond) // on a bound: in that bucket (le)
	m.Ran(OutcomeHandlerError, 20*time.Millisecond)
	m.Ran(OutcomeTimeout, 400*time.Second) // past the last bound: +Inf only
	m.Call(OutcomeBusy)
	gauges := func() Gauges { return Gauges{Inflight: 3, Stuck: 1, ColdStarted: true} }
	text := scrape(t, newCollector(m, "default", "hello", gauges))

	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	want := map[string]string{
		"litefunctions_runtime_calls_total":              "COUNTER",
		"litefunctions_runtime_handler_duration_seconds": "HISTOGRAM",
		"litefunctions_runtime_inflight":                 "GAUGE",
		"litefunctions_runtime_cold_starts_total":        "COUNTER",
		"litefunctions_runtime_stuck_handlers":           "GAUGE",
	}
	if len(families) != len(want) {
		t.Errorf("%d families, want %d:\n%s", len(families), len(want), text)
	}
	for name, kind := range want {
		f, ok := families[name]
		if !ok || f.GetType().String() != kind {
			t.Errorf("%s: missing or not a %s", name, kind)
		}
	}
	lines := []string{
		`litefunctions_runtime_calls_total{function="hello",namespace="default",outcome="ok"} 2`,
		`litefunctions_runtime_calls_total{function="hello",namespace="default",outcome="handler_error"} 1`,
		`litefunctions_runtime_calls_total{function="hello",namespace="default",outcome="timeout"} 1`,
		`litefunctions_runtime_calls_total{function="hello",namespace="default",outcome="busy"} 1`,
		`litefunctions_runtime_calls_total{function="hello",namespace="default",outcome="bad_request"} 0`,
		`litefunctions_runtime_calls_total{function="hello",namespace="default",outcome="too_large"} 0`,
		`litefunctions_runtime_calls_total{function="hello",namespace="default",outcome="internal"} 0`,
		`litefunctions_runtime_handler_duration_seconds_bucket{function="hello",namespace="default",le="0.0005"} 1`,
		`litefunctions_runtime_handler_duration_seconds_bucket{function="hello",namespace="default",le="0.001"} 2`,
		`litefunctions_runtime_handler_duration_seconds_bucket{function="hello",namespace="default",le="0.01"} 2`,
		`litefunctions_runtime_handler_duration_seconds_bucket{function="hello",namespace="default",le="0.025"} 3`,
		`litefunctions_runtime_handler_duration_seconds_bucket{function="hello",namespace="default",le="300"} 3`,
		`litefunctions_runtime_handler_duration_seconds_bucket{function="hello",namespace="default",le="+Inf"} 4`,
		`litefunctions_runtime_handler_duration_seconds_sum{function="hello",namespace="default"} 400.0213`,
		`litefunctions_runtime_handler_duration_seconds_count{function="hello",namespace="default"} 4`,
		`litefunctions_runtime_inflight{function="hello",namespace="default"} 3`,
		`litefunctions_runtime_cold_starts_total{function="hello",namespace="default"} 1`,
		`litefunctions_runtime_stuck_handlers{function="hello",namespace="default"} 1`,
		`# HELP litefunctions_runtime_calls_total Calls this replica answered, by outcome`,
	}
	for _, line := range lines {
		if !strings.Contains(text, line+"\n") {
			t.Errorf("missing line %s", line)
		}
	}
	buckets := families["litefunctions_runtime_handler_duration_seconds"].GetMetric()[0].GetHistogram().GetBucket()
	if len(buckets) != len(DurationBuckets)+1 || !math.IsInf(buckets[len(DurationBuckets)].GetUpperBound(), 1) {
		t.Fatalf("%d buckets, want %d and +Inf", len(buckets), len(DurationBuckets))
	}
	for i, b := range buckets[:len(DurationBuckets)] {
		if b.GetUpperBound() != DurationBuckets[i] {
			t.Errorf("bucket %d: le=%v, want %v", i, b.GetUpperBound(), DurationBuckets[i])
		}
	}
}

// Metrics off is a nil *Metrics: every method must be a no-op on it (a missing nil check panics here).
func TestNilMetricsMethodsDoNotPanic(t *testing.T) {
	var m *Metrics
	m.Call(OutcomeOK)
	m.Ran(OutcomeTimeout, time.Second)
}

func TestMetricsAreSafeFromManyGoroutines(t *testing.T) {
	m := &Metrics{}
	done := make(chan struct{})
	for range 8 {
		go func() {
			for range 1000 {
				m.Ran(OutcomeOK, time.Millisecond)
			}
			done <- struct{}{}
		}()
	}
	for range 8 {
		<-done
	}
	if m.calls[OutcomeOK].Load() != 8000 || m.dur[1].Load() != 8000 || m.durNS.Load() != 8000*uint64(time.Millisecond) {
		t.Fatalf("lost counts: %d %d %d", m.calls[OutcomeOK].Load(), m.dur[1].Load(), m.durNS.Load())
	}
}

// BenchmarkAnswer is the replica's own work per call after the handler returned (encode the answer, count
// it), without and with metrics: `go test -bench Answer ./serving` gives the ratio.
func BenchmarkAnswer(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "metrics_off"
		if on {
			name = "metrics_on"
		}
		b.Run(name, func(b *testing.B) {
			r := newBenchReplica(on)
			c := &call{req: benchRequest(), started: time.Now()}
			resp := benchResponse()
			b.ReportAllocs()
			for b.Loop() {
				payload, outcome := r.answer(c, resp, nil, nil)
				r.metrics.Ran(outcome, time.Since(c.started))
				if len(payload) == 0 {
					b.Fatal("no payload")
				}
			}
		})
	}
}

// BenchmarkRan is the whole per-call cost of metrics: one call counted with its duration.
func BenchmarkRan(b *testing.B) {
	m := &Metrics{}
	b.ReportAllocs()
	for b.Loop() {
		m.Ran(OutcomeOK, 700*time.Microsecond)
	}
}
