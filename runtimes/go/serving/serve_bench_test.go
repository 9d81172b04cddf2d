package serving

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"litefunctions.io/runtime/envelope"
	"litefunctions.io/runtime/lf"
	"litefunctions.io/runtime/settings"
)

// natsServerBinary is a nats-server to run: $LF_NATS_SERVER, PATH, or the repository's virtualenv's.
func natsServerBinary() string {
	if path := os.Getenv("LF_NATS_SERVER"); path != "" {
		return path
	}
	if path, err := exec.LookPath("nats-server"); err == nil {
		return path
	}
	if path, err := filepath.Abs("../../../.venv/bin/nats-server"); err == nil {
		if _, err := os.Stat(path); err == nil {
			return path
		}
	}
	return ""
}

// startNats runs a nats-server on a free loopback port until the benchmark ends.
func startNats(b *testing.B) string {
	binary := natsServerBinary()
	if binary == "" {
		b.Skip("no nats-server (set LF_NATS_SERVER, or put one on PATH)")
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := listener.Addr().(*net.TCPAddr).Port
	_ = listener.Close()
	server := exec.Command(binary, "-a", "127.0.0.1", "-p", strconv.Itoa(port))
	if err := server.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = server.Process.Kill(); _ = server.Wait() })
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if nc, err := nats.Connect(url); err == nil {
			nc.Close()
			return url
		}
		if time.Now().After(deadline) {
			b.Fatalf("nats-server did not come up at %s", url)
		}
	}
}

func cpuTime() time.Duration {
	var usage syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &usage)
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}

// BenchmarkServeNATS is the serving path of a sync call end to end: a replica serving hello over a real
// nats-server (sub-benchmarks: capture and metrics on or off) and a client in the same process with 16
// requests outstanding, as `python -m bench runtimes` (bench/runtimes.py) drives it. cpu-µs/call is the
// process's CPU time (replica and client, not nats-server) per call:
// `go test -run - -bench ServeNATS -benchtime 20000x -count 5 ./serving`.
func BenchmarkServeNATS(b *testing.B) {
	for _, mode := range []struct {
		name             string
		capture, metrics bool
	}{{"capture_on", true, false}, {"capture_off", false, false}, {"capture_on_metrics_on", true, true}} {
		b.Run(mode.name, func(b *testing.B) { benchServe(b, mode.capture, mode.metrics) })
	}
}

func benchServe(b *testing.B, capture, metrics bool) {
	url := startNats(b)
	environ := []string{"LF_NATS_URL=" + url, "LF_FUNCTION=hello", "LF_NAMESPACE=default", "LF_CONCURRENCY=64"}
	s, err := settings.New(environ)
	if err != nil {
		b.Fatal(err)
	}
	handler := func(_ context.Context, req *lf.Request) (*lf.Response, error) {
		name := req.Query().Get("name")
		if name == "" {
			name = "world"
		}
		return lf.Text(200, "Hello, "+name+", from Go!\n"), nil
	}
	r := NewReplica(s, handler, &Log{out: devNull(b)})
	if metrics { // the counters only: no /metrics server
		r.metrics = &Metrics{}
	}
	if capture {
		stdout, stderr := os.Stdout, os.Stderr // the process's stay; the capture replaces these copies
		c, err := installCapture(s.Namespace, s.Function, &stdout, &stderr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.close()
		r.capture = c
	}
	exited := make(chan int, 1)
	go func() {
		code, err := r.Run()
		if err != nil {
			b.Error(err)
		}
		exited <- code
	}()
	defer func() {
		r.Stop(ExitOK, "benchmark done")
		<-exited
	}()
	client, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	payload, _ := (&envelope.Request{BudgetMS: 60_000, CallID: "c", Method: "GET", Path: "/",
		Headers: []envelope.Pair{{Name: "host", Value: "x"}}}).Encode()
	subject := "lf.invoke.default.hello"
	call := func() error {
		reply, err := client.Request(subject, payload, 5*time.Second)
		if err != nil {
			return err
		}
		resp, err := envelope.DecodeResponse(reply.Data)
		if err == nil && resp.Status != 200 {
			err = fmt.Errorf("status %d: %s", resp.Status, resp.Error)
		}
		return err
	}
	for deadline := time.Now().Add(10 * time.Second); call() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) { // "ready" is logged after the SUB reached the server; Run may lag
			b.Fatal("the replica did not answer")
		}
	}
	const outstanding = 16
	var next sync.Mutex
	left := b.N
	b.ResetTimer()
	began := cpuTime()
	var wg sync.WaitGroup
	for range outstanding {
		wg.Go(func() {
			for {
				next.Lock()
				if left == 0 {
					next.Unlock()
					return
				}
				left--
				next.Unlock()
				if err := call(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(cpuTime()-began)/float64(b.N)/1e3, "cpu-µs/call")
}

func devNull(b *testing.B) *os.File {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = f.Close() })
	return f
}
