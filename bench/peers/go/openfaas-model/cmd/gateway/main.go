// Command gateway models the request path of the OpenFaaS gateway's function proxy with direct functions (not its
// code): a gorilla/mux router on /function/{name}, the call-id middleware (a UUID, X-Start-Time and X-Served-By),
// the upstream URL resolved per request from the function name, the /function/<name> prefix trimmed with the
// gateway's regular expression, hop-by-hop headers dropped and X-Forwarded-* added, a context with
// upstream_timeout, an http.Client with the gateway's transport settings, the response copied with
// io.CopyBuffer, then the logging and Prometheus notifiers.
//
// Settings come from the environment: port, upstream_url (where the function's watchdog listens; the real
// gateway builds http://<name>.<direct_functions_suffix>:8080), upstream_timeout, read_timeout, write_timeout,
// max_idle_conns, max_idle_conns_per_host, metrics_port.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const nameExpression = "-a-zA-Z_0-9."

var functionMatcher = regexp.MustCompile("^/?(?:async-)?function/([^/?]+)([^?]*)")

var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te",
	"Trailer", "Transfer-Encoding", "Upgrade",
}

func env(name, fallback string) string {
	if value, ok := os.LookupEnv(name); ok && value != "" {
		return value
	}
	return fallback
}

func duration(name string, fallback time.Duration) time.Duration {
	raw := env(name, "")
	if raw == "" {
		return fallback
	}
	d, err := time.ParseDuration(raw)
	if err != nil {
		log.Fatalf("bad %s: %q", name, raw)
	}
	return d
}

func integer(name string, fallback int) int {
	raw := env(name, "")
	if raw == "" {
		return fallback
	}
	n, err := strconv.Atoi(raw)
	if err != nil {
		log.Fatalf("bad %s: %q", name, raw)
	}
	return n
}

type proxy struct {
	scheme, host string
	port         int
	client       *http.Client
	timeout      time.Duration
	histogram    *prometheus.HistogramVec
	invocations  *prometheus.CounterVec
}

func serviceName(path string) string {
	if !strings.HasPrefix(path, "/function/") {
		return ""
	}
	parts := functionMatcher.FindStringSubmatch(path)
	if len(parts) != 3 {
		return ""
	}
	return strings.Trim(parts[1], "/")
}

func trimmedPath(path string) string {
	if parts := functionMatcher.FindStringSubmatch(path); len(parts) == 3 {
		return parts[2]
	}
	return path
}

func cloneHeaders(dst, src http.Header) {
	for key, values := range src {
		dst[key] = append([]string(nil), values...)
	}
}

func (p *proxy) forward(w http.ResponseWriter, r *http.Request) int {
	url := fmt.Sprintf("%s://%s:%d", p.scheme, p.host, p.port) + trimmedPath(r.URL.Path)
	if r.URL.RawQuery != "" {
		url = fmt.Sprintf("%s?%s", url, r.URL.RawQuery)
	}
	out, err := http.NewRequest(r.Method, url, nil)
	if err != nil {
		w.WriteHeader(http.StatusBadGateway)
		return http.StatusBadGateway
	}
	cloneHeaders(out.Header, r.Header)
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	if r.Host != "" && out.Header.Get("X-Forwarded-Host") == "" {
		out.Header["X-Forwarded-Host"] = []string{r.Host}
	}
	if out.Header.Get("X-Forwarded-For") == "" {
		out.Header["X-Forwarded-For"] = []string{r.RemoteAddr}
	}
	if r.Body != nil {
		out.Body = r.Body
		defer r.Body.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	res, err := p.client.Do(out.WithContext(ctx))
	if err != nil {
		log.Printf("error with upstream request to: %s, %s", url, err)
		w.WriteHeader(http.StatusBadGateway)
		return http.StatusBadGateway
	}
	defer res.Body.Close()
	cloneHeaders(w.Header(), res.Header)
	w.WriteHeader(res.StatusCode)
	_, _ = io.CopyBuffer(w, res.Body, nil)
	return res.StatusCode
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The call-id middleware.
	start := time.Now()
	if r.Header.Get("X-Call-Id") == "" {
		callID := uuid.New().String()
		r.Header.Add("X-Call-Id", callID)
		w.Header().Add("X-Call-Id", callID)
	}
	r.Header.Add("X-Start-Time", fmt.Sprintf("%d", start.UTC().UnixNano()))
	w.Header().Add("X-Start-Time", fmt.Sprintf("%d", start.UTC().UnixNano()))
	w.Header().Add("X-Served-By", "openfaas-ce/model")

	originalURL := r.URL.String()
	begun := time.Now()
	status := p.forward(w, r)
	took := time.Since(begun)

	// The notifiers: logging, then Prometheus.
	log.Printf("Forwarded [%s] to %s - [%d] - %f seconds", r.Method, originalURL, status, took.Seconds())
	name := serviceName(originalURL)
	p.histogram.WithLabelValues(name).Observe(took.Seconds())
	p.invocations.With(prometheus.Labels{"function_name": name, "code": strconv.Itoa(status)}).Inc()
}

func main() {
	upstream := env("upstream_url", "")
	if upstream == "" {
		log.Fatal(`"upstream_url" is required`)
	}
	hostPort := strings.TrimPrefix(strings.TrimPrefix(upstream, "http://"), "https://")
	host, rawPort, err := net.SplitHostPort(strings.TrimSuffix(hostPort, "/"))
	if err != nil {
		log.Fatalf("bad upstream_url %q: %s", upstream, err)
	}
	upstreamPort, err := strconv.Atoi(rawPort)
	if err != nil {
		log.Fatalf("bad upstream_url %q: %s", upstream, err)
	}
	timeout := duration("upstream_timeout", 60*time.Second)
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 1 * time.Second}).DialContext,
		MaxIdleConns:          integer("max_idle_conns", 1024),
		MaxIdleConnsPerHost:   integer("max_idle_conns_per_host", 1024),
		IdleConnTimeout:       120 * time.Millisecond,
		ExpectContinueTimeout: 1500 * time.Millisecond,
	}
	p := &proxy{
		scheme: "http", host: host, port: upstreamPort,
		client:  &http.Client{Transport: transport},
		timeout: timeout,
		histogram: promauto.NewHistogramVec(prometheus.HistogramOpts{Name: "gateway_functions_seconds",
			Help: "Function time taken"}, []string{"function_name"}),
		invocations: promauto.NewCounterVec(prometheus.CounterOpts{Name: "gateway_function_invocation_total",
			Help: "Function metrics"}, []string{"function_name", "code"}),
	}

	router := mux.NewRouter()
	router.Handle("/function/{name:["+nameExpression+"]+}", p)
	router.Handle("/function/{name:["+nameExpression+"]+}/", p)
	router.Handle("/function/{name:["+nameExpression+"]+}/{params:.*}", p)
	router.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("OK")) })

	metricsRouter := mux.NewRouter()
	metricsRouter.Handle("/metrics", promhttp.Handler())
	go func() {
		log.Print(http.ListenAndServe("127.0.0.1:"+env("metrics_port", "8082"), metricsRouter))
	}()

	server := &http.Server{
		Addr:           "127.0.0.1:" + env("port", "8080"),
		Handler:        router,
		ReadTimeout:    duration("read_timeout", 60*time.Second),
		WriteTimeout:   duration("write_timeout", 60*time.Second),
		MaxHeaderBytes: http.DefaultMaxHeaderBytes,
	}
	log.Printf("gateway model: /function/{name} -> %s", upstream)
	log.Fatal(server.ListenAndServe())
}
