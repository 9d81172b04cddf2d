package serving

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// The replica's readiness endpoint (LF_HEALTH_PORT > 0): GET /readyz is 200 only when a call sent now would be
// answered, 503 with the reason otherwise; the Python runtime's lf_runtime.health, with the same reasons. Ready
// means connected to NATS, the invoke subscription confirmed by the server (a PING/PONG round trip after the SUB,
// at start and again after every reconnect, when nats.go has sent the SUB again) and not draining. Nothing is done
// per call: the state changes with the connection's events and is read when a probe asks.

// Reasons /readyz gives, the same words as the Python and Rust runtimes'.
const (
	reasonConnecting   = "connecting to NATS"
	reasonDisconnected = "disconnected from NATS, reconnecting"
	reasonUnconfirmed  = "reconnected to NATS, subscription not confirmed yet"
	reasonDraining     = "draining"
)

// readiness is what /readyz reads; every field is safe from any goroutine.
type readiness struct {
	subscribed atomic.Bool   // the first SUB was confirmed
	draining   atomic.Bool   // Stop was called
	links      atomic.Uint64 // connections lost so far
	confirmed  atomic.Uint64 // the value of links when the server last confirmed the subscription
}

// notReady is why a call would not be answered now ("" when it would); connected reports the connection's state.
func (r *readiness) notReady(connected func() bool) string {
	switch {
	case r.draining.Load():
		return reasonDraining
	case !r.subscribed.Load():
		return reasonConnecting
	case !connected():
		return reasonDisconnected
	case r.confirmed.Load() != r.links.Load():
		return reasonUnconfirmed
	}
	return ""
}

// lost counts a lost connection: the subscription is unconfirmed until a round trip after the reconnect.
func (r *readiness) lost() { r.links.Add(1) }

// confirm runs flush (a round trip behind the SUB the client sent again on reconnecting) and, if the connection
// was not lost again meanwhile, counts the subscription as confirmed.
func (r *readiness) confirm(flush func() error) error {
	links := r.links.Load()
	if err := flush(); err != nil {
		return err
	}
	if r.links.Load() == links { // else lost again during the flush: the next reconnect confirms
		r.confirmed.Store(links) // a loss from here on makes links differ again
	}
	return nil
}

// readyHandler answers GET /readyz from notReady.
func readyHandler(notReady func() string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Cache-Control", "no-store")
		if reason := notReady(); reason != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: " + reason + "\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
}

// endpointServer listens on host:port and serves one GET path until closed: /readyz here, /metrics in
// metrics.go. URL is the endpoint's full address.
type endpointServer struct {
	server *http.Server
	URL    string
}

func serveEndpoint(host string, port int, path string, handler http.Handler) (*endpointServer, error) {
	listener, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+path, handler)
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = server.Serve(listener) }() // ErrServerClosed once closed
	return &endpointServer{server: server, URL: "http://" + listener.Addr().String() + path}, nil
}

func (s *endpointServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.server.Shutdown(ctx)
}

func serveHealth(notReady func() string, host string, port int) (*endpointServer, error) {
	return serveEndpoint(host, port, "/readyz", readyHandler(notReady))
}
