// Command watchdog models the request path of the OpenFaaS of-watchdog in http mode (not its code): Prometheus
// instrumentation of every request (in-flight gauge, counter and histogram by code and method), a new upstream
// request per call to http_upstream_url + RequestURI with the headers copied, a context with exec_timeout, an
// http.Client with of-watchdog's transport settings, the response headers copied plus X-Duration-Seconds, the
// body read whole then written, and one log line per request.
//
// Settings come from the environment like of-watchdog's: port, http_upstream_url, exec_timeout, read_timeout,
// write_timeout, metrics_port.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func env(name, fallback string) string {
	if value, ok := os.LookupEnv(name); ok && value != "" {
		return value
	}
	return fallback
}

func seconds(name string, fallback time.Duration) time.Duration {
	raw := env(name, "")
	if raw == "" {
		return fallback
	}
	if d, err := time.ParseDuration(raw); err == nil {
		return d
	}
	if n, err := strconv.Atoi(raw); err == nil {
		return time.Duration(n) * time.Second
	}
	log.Fatalf("bad %s: %q", name, raw)
	return 0
}

type upstream struct {
	base        string
	client      *http.Client
	execTimeout time.Duration
}

func newUpstream(base string, execTimeout time.Duration) *upstream {
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: execTimeout, KeepAlive: 10 * time.Second}).DialContext,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   100,
		IdleConnTimeout:       500 * time.Millisecond,
		ExpectContinueTimeout: 1500 * time.Millisecond,
	}
	client := &http.Client{
		Transport:     transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &upstream{base: base, client: client, execTimeout: execTimeout}
}

func cloneHeaders(dst, src http.Header) {
	for key, values := range src {
		dst[key] = append([]string(nil), values...)
	}
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	started := time.Now()
	if r.Body != nil {
		defer r.Body.Close()
	}
	out, err := http.NewRequest(r.Method, u.base+r.RequestURI, r.Body)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	for key := range r.Header {
		out.Header.Set(key, r.Header.Get(key))
	}
	out.Host = r.Host
	cloneHeaders(out.Header, r.Header)

	ctx, cancel := context.WithTimeout(context.Background(), u.execTimeout)
	defer cancel()
	res, err := u.client.Do(out.WithContext(ctx))
	took := func() string { return fmt.Sprintf("%f", time.Since(started).Seconds()) }
	if err != nil {
		log.Printf("Upstream HTTP request error: %s", err)
		w.Header().Set("X-Duration-Seconds", took())
		if ctx.Err() != nil {
			w.WriteHeader(http.StatusGatewayTimeout)
		} else {
			w.WriteHeader(http.StatusInternalServerError)
		}
		return
	}
	defer res.Body.Close()
	cloneHeaders(w.Header(), res.Header)
	w.Header().Set("X-Duration-Seconds", took())
	w.WriteHeader(res.StatusCode)
	body, err := io.ReadAll(res.Body)
	if err != nil {
		log.Printf("read body err: %s", err)
	}
	_, _ = w.Write(body)
	log.Printf("%s %s - %s - ContentLength: %dB (%.4fs)", r.Method, r.RequestURI, res.Status, len(body),
		time.Since(started).Seconds())
}

func main() {
	base := env("http_upstream_url", "")
	if base == "" {
		log.Fatal(`"http_upstream_url" is required`)
	}
	port := env("port", "8080")
	execTimeout := seconds("exec_timeout", 10*time.Second)

	inFlight := promauto.NewGauge(prometheus.GaugeOpts{Subsystem: "http", Name: "requests_in_flight",
		Help: "total HTTP requests in-flight"})
	total := promauto.NewCounterVec(prometheus.CounterOpts{Subsystem: "http", Name: "requests_total",
		Help: "total HTTP requests processed"}, []string{"code", "method"})
	duration := promauto.NewHistogramVec(prometheus.HistogramOpts{Subsystem: "http",
		Name: "request_duration_seconds", Help: "Seconds spent serving HTTP requests.",
		Buckets: prometheus.DefBuckets}, []string{"code", "method"})
	var handler http.Handler = newUpstream(base, execTimeout)
	handler = promhttp.InstrumentHandlerInFlight(inFlight,
		promhttp.InstrumentHandlerDuration(duration, promhttp.InstrumentHandlerCounter(total, handler)))

	mux := http.NewServeMux()
	mux.Handle("/", handler)
	mux.HandleFunc("/_/health", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("OK")) })

	metricsMux := http.NewServeMux()
	metricsMux.Handle("/metrics", promhttp.Handler())
	go func() {
		log.Print(http.ListenAndServe("127.0.0.1:"+env("metrics_port", "8081"), metricsMux))
	}()

	server := &http.Server{
		Addr:           "127.0.0.1:" + port,
		Handler:        mux,
		ReadTimeout:    seconds("read_timeout", 10*time.Second),
		WriteTimeout:   seconds("write_timeout", 10*time.Second),
		MaxHeaderBytes: 1 << 20,
	}
	log.Printf("watchdog model: mode=http upstream=%s port=%s", base, port)
	log.Fatal(server.ListenAndServe())
}
