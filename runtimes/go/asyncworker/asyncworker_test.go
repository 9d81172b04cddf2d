package asyncworker

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRecordBytesAreThePythonRuntimes(t *testing.T) {
	for _, g := range goldenRecords {
		if got := string(EncodeRecord(g.record)); got != g.stored {
			t.Errorf("EncodeRecord(%s)\n got %s\nwant %s", g.record.CallID, got, g.stored)
		}
		if got := string(RecordView(g.record)); got != g.view {
			t.Errorf("RecordView(%s)\n got %s\nwant %s", g.record.CallID, got, g.view)
		}
	}
}

func TestRecordReadsBackAndSurvivesARoundTrip(t *testing.T) {
	for _, g := range goldenRecords {
		decoded, err := DecodeRecord([]byte(g.stored))
		if err != nil {
			t.Fatal(err)
		}
		if again := string(EncodeRecord(decoded)); again != g.stored {
			t.Errorf("round trip of %s\n got %s\nwant %s", g.record.CallID, again, g.stored)
		}
	}
	decoded, _ := DecodeRecord([]byte(goldenRecords[1].stored))
	if decoded.Result == nil || string(decoded.Result.Body) != "hi \xff" || decoded.Redrives != 1 ||
		decoded.Result.Headers[1] != [2]string{"x-q", "a\"b\\c\n\u00e9\x01"} {
		t.Errorf("decoded %+v", decoded)
	}
	if _, err := DecodeRecord([]byte(`{"call_id":"x","status":"queued","namespace":"n","function":"f","new_field":[1]}`)); err != nil {
		t.Errorf("an unknown field must be ignored: %v", err)
	}
}

func TestFloatForms(t *testing.T) {
	for f, want := range map[float64][2]string{
		0: {"0.0", "0.0"}, 1: {"1.0", "1.0"}, 1.5: {"1.5", "1.5"}, 1e16: {"1e16", "1e+16"},
		1e-5: {"0.00001", "1e-05"}, 1.2345678901234568e17: {"1.2345678901234568e17", "1.2345678901234568e+17"},
		1764380000.123456: {"1764380000.123456", "1764380000.123456"},
	} {
		if got := string(msgspecFloat(nil, f)); got != want[0] {
			t.Errorf("msgspecFloat(%v) = %s, want %s", f, got, want[0])
		}
		if got := string(pyFloat(nil, f)); got != want[1] {
			t.Errorf("pyFloat(%v) = %s, want %s", f, got, want[1])
		}
	}
}

func TestBackoffIsAsyncpolicys(t *testing.T) {
	p := Policy{MaxAttempts: 3, Backoff: 300 * time.Millisecond, MaxBackoff: DefaultMaxBackoff, Jitter: DefaultJitter}
	for attempt, want := range map[int][2]float64{1: {0.3, 0.33}, 2: {0.6, 0.66}, 3: {1.2, 1.32}, 20: {300, 330}} {
		low, high := BackoffDelay(attempt, p, 0).Seconds(), BackoffDelay(attempt, p, 0.5).Seconds()
		if d := low - want[0]; d > 1e-6 || d < -1e-6 {
			t.Errorf("attempt %d without jitter: %v, want %v", attempt, low, want[0])
		}
		if d := high - want[1]; d > 1e-6 || d < -1e-6 {
			t.Errorf("attempt %d with half the jitter: %v, want %v", attempt, high, want[1])
		}
	}
}

func TestDecisions(t *testing.T) {
	p := Policy{MaxAttempts: 3, Backoff: 300 * time.Millisecond, MaxBackoff: DefaultMaxBackoff, Jitter: DefaultJitter}
	aged := Policy{MaxAttempts: 3, Backoff: time.Second, MaxBackoff: DefaultMaxBackoff, MaxAge: time.Minute}
	short := Policy{MaxAttempts: 3, Backoff: time.Second, MaxBackoff: DefaultMaxBackoff, MaxAge: 2500 * time.Millisecond}
	for name, c := range map[string]struct{ got, want Decision }{
		"200 done":       {AfterAttempt(1, 200, 0, 0, p, 0), Decision{Action: ActionDone}},
		"302 done":       {AfterAttempt(1, 302, 0, 0, p, 0), Decision{Action: ActionDone}},
		"500 last":       {AfterAttempt(3, 500, 0, 0, p, 0), Decision{Action: ActionDead, Reason: "status 500 on the last of 3 attempts"}},
		"400 dead":       {AfterAttempt(1, 400, 0, 0, p, 0), Decision{Action: ActionDead, Reason: "status 400 is not retryable"}},
		"429 retry":      {AfterAttempt(1, 429, 0, 0, p, 0), Decision{Action: ActionRetry, Delay: 300 * time.Millisecond, Reason: "status 429"}},
		"408 retry":      {AfterAttempt(2, 408, 0, 0, p, 0), Decision{Action: ActionRetry, Delay: 600 * time.Millisecond, Reason: "status 408"}},
		"died on last":   {BeforeAttempt(4, 0, 0, p), Decision{Action: ActionDead, Reason: "the replica stopped during attempt 3 of 3"}},
		"runs":           {BeforeAttempt(3, 0, 0, p), Decision{Action: ActionRun}},
		"too old":        {BeforeAttempt(1, 0, 61, aged), Decision{Action: ActionDead, Reason: "older than maxAge (60 s) before attempt 1"}},
		"too old, 2.5":   {BeforeAttempt(1, 0, 61, short), Decision{Action: ActionDead, Reason: "older than maxAge (2.5 s) before attempt 1"}},
		"next too late":  {AfterAttempt(1, 503, 0, 59.5, aged, 0), Decision{Action: ActionDead, Reason: "status 503; the next attempt would pass maxAge (60 s)"}},
		"504 is retried": {AfterAttempt(1, 504, 0, 0, p, 0), Decision{Action: ActionRetry, Delay: 300 * time.Millisecond, Reason: "status 504"}},
	} {
		if c.got != c.want {
			t.Errorf("%s: %+v, want %+v", name, c.got, c.want)
		}
	}
}

func TestDeadLetterHeaders(t *testing.T) {
	record := &Record{
		CallID: "abc", Namespace: "default", Function: "f", Status: StatusDead, Attempts: 3, SubmittedAt: 1764380000.5,
		UpdatedAt: 1764380003.25, LastError: "status 500 on the last\r\nof 3: " + strings.Repeat("é", 2000), Redrives: 2,
		Result: &Result{Status: 500},
	}
	h := DeadLetterHeaders(record, "https://example.com/hook")
	want := map[string]string{
		"Nats-Msg-Id": "abc.d2", "Lf-Attempts": "3", "Lf-Submitted": "1764380000.500000", "Lf-Dead-At": "1764380003.250000",
		"Lf-Redrive": "2", "Lf-Status": "500", "Lf-Callback-Url": "https://example.com/hook",
	}
	for k, v := range want {
		if h.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, h.Get(k), v)
		}
	}
	reason := h.Get("Lf-Error")
	if !strings.HasPrefix(reason, "status 500 on the last  of 3: éé") || len([]rune(reason)) != maxLetterErrorLen {
		t.Errorf("Lf-Error %q (%d characters)", reason[:40], len([]rune(reason)))
	}
	if got := DeadLetterHeaders(&Record{CallID: "x"}, "").Get("Lf-Error"); got != "unknown" {
		t.Errorf("empty error: %q", got)
	}
	if _, ok := DeadLetterHeaders(&Record{CallID: "x"}, "")["Lf-Status"]; ok {
		t.Error("Lf-Status without a result")
	}
}

func TestNames(t *testing.T) {
	if ConsumerName("default", "f") != "default_f" || AsyncFilter("default", "f") != "lf.async.default.f.*" ||
		DeadSubject("ns", "f", "c") != "lf.dead.ns.f.c" {
		t.Error("names differ from lf_core.asynccalls.streams'")
	}
	for id, ok := range map[string]bool{"abc-123": true, "": false, "a.b": false, "a*": false, strings.Repeat("a", 65): false} {
		if ValidCallID(id) != ok {
			t.Errorf("ValidCallID(%q) != %v", id, ok)
		}
	}
	cfg := ConsumerConfig("default", "f", 7*time.Second, 1000)
	if cfg.Durable != "default_f" || cfg.MaxDeliver != -1 || cfg.AckWait != 7*time.Second || cfg.MaxWaiting != 512 {
		t.Errorf("consumer %+v", cfg)
	}
}

func TestPublicAddresses(t *testing.T) {
	for addr, public := range map[string]bool{
		"8.8.8.8": true, "1.1.1.1": true, "2606:4700::1111": true,
		"127.0.0.1": false, "10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false, "169.254.169.254": false,
		"100.64.0.1": false, "0.0.0.0": false, "224.0.0.1": false, "240.0.0.1": false, "255.255.255.255": false,
		"192.0.2.1": false, "::1": false, "::": false, "fe80::1": false, "fc00::1": false, "ff02::1": false,
		"::ffff:127.0.0.1": false, "::ffff:8.8.8.8": true, "64:ff9b::a00:1": false, "2002:7f00:1::": false,
		"::127.0.0.1": false, "2001:db8::1": false,
	} {
		if got := IsPublic(netip.MustParseAddr(addr)); got != public {
			t.Errorf("IsPublic(%s) = %v, want %v", addr, got, public)
		}
	}
}

func TestNumericHosts(t *testing.T) {
	for host, want := range map[string]string{
		"2130706433": "127.0.0.1", "0177.0.0.1": "127.0.0.1", "0x7f.1": "127.0.0.1", "127.1": "127.0.0.1",
		"10.0.258": "10.0.1.2", "[::1]": "::1", "8.8.8.8": "8.8.8.8",
	} {
		got, ok := numericHost(host)
		if !ok || got.String() != want {
			t.Errorf("numericHost(%q) = %v %v, want %s", host, got, ok, want)
		}
	}
	for _, host := range []string{"example.com", "1.2.3.4.5", "0x1g", "256.1.1.1", "deadbeef"} {
		if got, ok := numericHost(host); ok {
			t.Errorf("numericHost(%q) = %v, want none", host, got)
		}
	}
}

func TestResolveTarget(t *testing.T) {
	ctx := context.Background()
	resolver := func(_ context.Context, host string) ([]netip.Addr, error) {
		switch host {
		case "public.test":
			return []netip.Addr{netip.MustParseAddr("93.184.216.34")}, nil
		case "mixed.test":
			return []netip.Addr{netip.MustParseAddr("93.184.216.34"), netip.MustParseAddr("10.0.0.1")}, nil
		}
		return nil, errors.New("no such host")
	}
	target, err := ResolveTarget(ctx, "https://public.test/hook?x=1", false, resolver)
	if err != nil || target.Port != 443 || target.Host != "public.test" ||
		!reflect.DeepEqual(target.Addresses, []netip.Addr{netip.MustParseAddr("93.184.216.34")}) {
		t.Fatalf("public: %+v %v", target, err)
	}
	for _, raw := range []string{
		"http://127.0.0.1:9/x", "http://[::ffff:127.0.0.1]/", "http://2130706433/", "ftp://example.com/",
		"http://mixed.test/", "http://nowhere.test/", "http://u:p@public.test/", "http://public.test/a b",
		"/relative", "http://public.test:99999/", "http:///nohost",
	} {
		var unsafe *UnsafeURLError
		if _, err := ResolveTarget(ctx, raw, false, resolver); !errors.As(err, &unsafe) {
			t.Errorf("%s: want a refusal, got %v", raw, err)
		}
	}
	if _, err := ResolveTarget(ctx, "http://127.0.0.1:9/x", true, resolver); err != nil {
		t.Errorf("allowPrivate: %v", err)
	}
	// the refusal goes into the call record the caller reads: it names the host, never the private address
	if _, err := ResolveTarget(ctx, "http://mixed.test/", false, resolver); err == nil ||
		!strings.Contains(err.Error(), "mixed.test") || strings.Contains(err.Error(), "10.0.0.1") {
		t.Errorf("mixed: %v", err)
	}
}
