// Package settings reads the runtime's settings from a list of environment variables (settings.New(os.Environ())),
// the same LF_* variables as the Python runtime (docs/operations.md "Runtime settings"). Every bad value is an
// error naming the variable; main turns it into exit code 2.
package settings

import (
	"fmt"
	"math"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Defaults shared with the Python runtime.
const (
	DefaultNatsURL          = "nats://127.0.0.1:4222"
	DefaultNamespace        = "default"
	DefaultConcurrency      = 16
	DefaultMaxResponseBytes = 6 * 1024 * 1024
	DefaultStuckLimit       = 3
	DefaultDrainTimeout     = 30 * time.Second
	DefaultConnectTimeout   = 10 * time.Second
	MaxConcurrency          = 10_000
)

var label = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// Settings of one replica.
type Settings struct {
	Function         string
	Namespace        string
	NatsURL          string
	Concurrency      int
	QueueDepth       int
	MaxResponseBytes int
	StuckLimit       int
	DrainTimeout     time.Duration
	SecretsDir       string
	ConnectTimeout   time.Duration
	// MetricsPort (LF_METRICS_PORT): serve GET /metrics on MetricsHost (LF_METRICS_HOST, default 127.0.0.1)
	// at this port; 0 (the default) serves nothing and counts nothing.
	MetricsPort int
	MetricsHost string
	// HealthPort (LF_HEALTH_PORT): serve GET /readyz on HealthHost (LF_HEALTH_HOST, default 127.0.0.1) at this
	// port; 0 (the default) serves nothing. It must differ from MetricsPort.
	HealthPort int
	HealthHost string
	// LogCapture (LF_LOG_CAPTURE, on unless "0"): the handler's stdout/stderr per call to LF_LOGS.
	LogCapture bool
}

// New parses "KEY=value" entries (os.Environ()); variables set to "" count as unset.
func New(environ []string) (*Settings, error) {
	env := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = strings.TrimSpace(v)
		}
	}
	r := reader{env: env}
	s := &Settings{
		Function:       r.name("LF_FUNCTION", "", "function name"),
		Namespace:      r.name("LF_NAMESPACE", DefaultNamespace, "namespace"),
		NatsURL:        r.natsURL("LF_NATS_URL"),
		Concurrency:    r.integer("LF_CONCURRENCY", DefaultConcurrency, 1, MaxConcurrency),
		StuckLimit:     r.integer("LF_STUCK_LIMIT", DefaultStuckLimit, 1, MaxConcurrency),
		DrainTimeout:   r.seconds("LF_DRAIN_TIMEOUT", DefaultDrainTimeout),
		SecretsDir:     env["LF_SECRETS_DIR"],
		ConnectTimeout: r.seconds("LF_CONNECT_TIMEOUT", DefaultConnectTimeout),
		MetricsPort:    r.integer("LF_METRICS_PORT", 0, 0, 65535),
		MetricsHost:    env["LF_METRICS_HOST"],
		HealthPort:     r.integer("LF_HEALTH_PORT", 0, 0, 65535),
		HealthHost:     env["LF_HEALTH_HOST"],
		LogCapture:     env["LF_LOG_CAPTURE"] != "0",
	}
	if s.MetricsHost == "" {
		s.MetricsHost = "127.0.0.1"
	}
	if s.HealthHost == "" {
		s.HealthHost = "127.0.0.1"
	}
	if s.HealthPort != 0 && s.HealthPort == s.MetricsPort {
		r.fail("LF_HEALTH_PORT=%d is also LF_METRICS_PORT: the two listeners need their own ports", s.HealthPort)
	}
	s.QueueDepth = r.integer("LF_QUEUE_DEPTH", s.Concurrency, 0, 1_000_000)
	s.MaxResponseBytes = r.integer("LF_MAX_RESPONSE_BYTES", DefaultMaxResponseBytes, 0, math.MaxInt32)
	if r.err != nil {
		return nil, r.err
	}
	return s, nil
}

// RedactedNatsURL is the server list without credentials, for logs.
func RedactedNatsURL(value string) string {
	var out []string
	for _, server := range strings.Split(value, ",") {
		u, err := url.Parse(strings.TrimSpace(server))
		if err != nil {
			out = append(out, "?")
			continue
		}
		out = append(out, u.Scheme+"://"+u.Host)
	}
	return strings.Join(out, ",")
}

// reader keeps the first error, so New reads top to bottom.
type reader struct {
	env map[string]string
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
}

func (r *reader) name(key, def, what string) string {
	value := r.env[key]
	if value == "" {
		value = def
	}
	switch {
	case value == "":
		r.fail("%s is required: the %s this replica serves", key, what)
	case len(value) > 63 || !label.MatchString(value):
		r.fail("%s: %s %q is not a DNS-1123 label (lowercase letters, digits and '-', at most 63)", key, what, value)
	}
	return value
}

func (r *reader) natsURL(key string) string {
	value := r.env[key]
	if value == "" {
		return DefaultNatsURL
	}
	for _, server := range strings.Split(value, ",") {
		u, err := url.Parse(strings.TrimSpace(server))
		if err != nil || u.Hostname() == "" ||
			(u.Scheme != "nats" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss") {
			r.fail("%s=%q: %q is not a nats://, tls://, ws:// or wss:// URL", key, value, strings.TrimSpace(server))
		}
	}
	return value
}

func (r *reader) integer(key string, def, low, high int) int {
	raw := r.env[key]
	if raw == "" {
		return def
	}
	value, err := strconv.Atoi(strings.ReplaceAll(raw, "_", ""))
	if err != nil {
		r.fail("%s=%q is not an integer", key, raw)
		return def
	}
	if value < low || value > high {
		r.fail("%s=%q is out of range: must be between %d and %d", key, raw, low, high)
	}
	return value
}

func (r *reader) seconds(key string, def time.Duration) time.Duration {
	raw := r.env[key]
	if raw == "" {
		return def
	}
	value, err := strconv.ParseFloat(strings.TrimSuffix(raw, "s"), 64)
	if err != nil {
		r.fail("%s=%q is not a number of seconds (e.g. '30' or '2.5s')", key, raw)
		return def
	}
	if value < 0 || math.IsInf(value, 0) || math.IsNaN(value) {
		r.fail("%s=%q must be zero or a positive number of seconds", key, raw)
		return def
	}
	return time.Duration(value * float64(time.Second))
}
