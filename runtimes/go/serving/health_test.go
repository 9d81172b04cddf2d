package serving

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestReadinessFollowsTheConnection(t *testing.T) {
	var r readiness
	connected := true
	up := func() bool { return connected }
	steps := []struct {
		name string
		do   func()
		want string
	}{
		{"before the first SUB is confirmed", func() {}, reasonConnecting},
		{"subscribed", func() { r.subscribed.Store(true) }, ""},
		{"connection lost", func() { r.lost(); connected = false }, reasonDisconnected},
		{"reconnected, round trip not done", func() { connected = true }, reasonUnconfirmed},
		{"round trip failed", func() {
			if err := r.confirm(func() error { return errors.New("timeout") }); err == nil {
				t.Fatal("confirm hid the flush's error")
			}
		}, reasonUnconfirmed},
		{"lost again during the round trip", func() {
			_ = r.confirm(func() error { r.lost(); return nil })
		}, reasonUnconfirmed},
		{"round trip done", func() { _ = r.confirm(func() error { return nil }) }, ""},
		{"draining", func() { r.draining.Store(true) }, reasonDraining},
	}
	for _, step := range steps {
		step.do()
		if got := r.notReady(up); got != step.want {
			t.Fatalf("%s: notReady %q, want %q", step.name, got, step.want)
		}
	}
}

func TestReadyHandler(t *testing.T) {
	for _, tc := range []struct {
		reason string
		status int
		body   string
	}{
		{"", http.StatusOK, "ready\n"},
		{reasonDraining, http.StatusServiceUnavailable, "not ready: draining\n"},
	} {
		w := httptest.NewRecorder()
		readyHandler(func() string { return tc.reason }).ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
		body, _ := io.ReadAll(w.Body)
		if w.Code != tc.status || string(body) != tc.body || w.Header().Get("Content-Type") != "text/plain" {
			t.Fatalf("reason %q: %d %q %q", tc.reason, w.Code, body, w.Header().Get("Content-Type"))
		}
	}
}

func TestHealthServerServesReadyzOnly(t *testing.T) {
	srv, err := serveHealth(func() string { return reasonConnecting }, "127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || string(body) != "not ready: connecting to NATS\n" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	base := srv.URL[:len(srv.URL)-len("/readyz")]
	if resp, err = http.Get(base + "/metrics"); err != nil || resp.StatusCode != 404 {
		t.Fatalf("/metrics on the health port: %v %v", resp, err)
	}
	resp.Body.Close()
}
