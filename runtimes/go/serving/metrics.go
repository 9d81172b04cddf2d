package serving

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The replica's /metrics (LF_METRICS_PORT > 0): the Python runtime's families, labels and buckets
// (runtimes/python/src/lf_runtime/metrics.py, docs/metrics.md). A call costs two or three atomic additions
// and a scan of the bucket bounds, no allocation; prometheus/client_golang runs at scrape time only, through
// a Collector that reads the atomics. With LF_METRICS_PORT unset the replica has no *Metrics and the hot
// path tests one nil pointer.

// Outcome of a call, the label values of litefunctions_runtime_calls_total (the Python runtime's OUTCOMES).
type Outcome uint8

// Outcomes, in the Python runtime's order.
const (
	OutcomeOK Outcome = iota
	OutcomeHandlerError
	OutcomeTimeout
	OutcomeBusy
	OutcomeBadRequest
	OutcomeTooLarge
	OutcomeInternal
	outcomes
)

var outcomeNames = [outcomes]string{"ok", "handler_error", "timeout", "busy", "bad_request", "too_large", "internal"}

func (o Outcome) String() string { return outcomeNames[o] }

// DurationBuckets are the ingestor's, in seconds (native/vectors/facts.json, checked by facts_test.go).
var DurationBuckets = [...]float64{
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
}

// bucketsNS are DurationBuckets in nanoseconds, so a duration is placed by integer comparisons.
var bucketsNS = func() (out [len(DurationBuckets)]time.Duration) {
	for i, b := range DurationBuckets {
		out[i] = time.Duration(b * 1e9)
	}
	return out
}()

// Metrics are a replica's counters. Every method is safe from any goroutine and a no-op on a nil *Metrics
// (metrics off), so callers need no check of their own.
type Metrics struct {
	calls [outcomes]atomic.Uint64
	dur   [len(DurationBuckets) + 1]atomic.Uint64 // per bucket (not cumulative); the last is +Inf
	durNS atomic.Uint64
}

// Call counts one answered call by its outcome.
func (m *Metrics) Call(outcome Outcome) {
	if m != nil {
		m.calls[outcome].Add(1)
	}
}

// Ran counts a call that ran (or timed out) with its outcome and its time from arrival to answer.
func (m *Metrics) Ran(outcome Outcome, took time.Duration) {
	if m == nil {
		return
	}
	m.calls[outcome].Add(1)
	i := 0
	for i < len(bucketsNS) && took > bucketsNS[i] { // le: a duration equal to a bound is in its bucket
		i++
	}
	m.dur[i].Add(1)
	m.durNS.Add(uint64(max(took, 0)))
}

// Gauges are what the collector reads from the replica at scrape time.
type Gauges struct {
	Inflight, Stuck int
	ColdStarted     bool
}

// collector is the prometheus.Collector over a replica's Metrics and gauges.
type collector struct {
	m      *Metrics
	gauges func() Gauges
	labels []string // namespace, function

	calls, duration, inflight, cold, stuck *prometheus.Desc
}

func newCollector(m *Metrics, namespace, function string, gauges func() Gauges) *collector {
	nf := []string{"namespace", "function"}
	desc := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, append(nf[:2:2], extra...), nil)
	}
	return &collector{
		m: m, gauges: gauges, labels: []string{namespace, function},
		calls:    desc("litefunctions_runtime_calls_total", "Calls this replica answered, by outcome", "outcome"),
		duration: desc("litefunctions_runtime_handler_duration_seconds", "Time from a call's arrival in the replica to its answer (calls that ran, timeouts included)"),
		inflight: desc("litefunctions_runtime_inflight", "Calls running or queued"),
		cold:     desc("litefunctions_runtime_cold_starts_total", "Cold starts of this replica (0 or 1)"),
		stuck:    desc("litefunctions_runtime_stuck_handlers", "Sync handler threads still running past their call's deadline"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.calls, c.duration, c.inflight, c.cold, c.stuck} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m, lv := c.m, c.labels
	for o := range outcomes {
		ch <- prometheus.MustNewConstMetric(c.calls, prometheus.CounterValue, float64(m.calls[o].Load()), lv[0], lv[1], outcomeNames[o])
	}
	buckets := make(map[float64]uint64, len(DurationBuckets))
	var total uint64
	for i, bound := range DurationBuckets {
		total += m.dur[i].Load()
		buckets[bound] = total
	}
	total += m.dur[len(DurationBuckets)].Load()
	ch <- prometheus.MustNewConstHistogram(c.duration, total, float64(m.durNS.Load())/1e9, buckets, lv...)
	g := c.gauges()
	cold := 0.0
	if g.ColdStarted {
		cold = 1
	}
	ch <- prometheus.MustNewConstMetric(c.inflight, prometheus.GaugeValue, float64(g.Inflight), lv...)
	ch <- prometheus.MustNewConstMetric(c.cold, prometheus.CounterValue, cold, lv...)
	ch <- prometheus.MustNewConstMetric(c.stuck, prometheus.GaugeValue, float64(g.Stuck), lv...)
}

// metricsHandler is the /metrics handler of one collector, on a registry of its own (no Go or process
// collectors: a replica exports the Python runtime's families only).
func metricsHandler(c *collector) (http.Handler, error) {
	registry := prometheus.NewRegistry()
	if err := registry.Register(c); err != nil {
		return nil, err
	}
	return promhttp.HandlerFor(registry, promhttp.HandlerOpts{}), nil
}

func serveMetrics(c *collector, host string, port int) (*endpointServer, error) {
	handler, err := metricsHandler(c)
	if err != nil {
		return nil, err
	}
	return serveEndpoint(host, port, "/metrics", handler)
}
