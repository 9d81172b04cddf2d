// Package serving runs one replica of one Go function over NATS (docs/architecture.md, "Runtimes"). The generated main
// package of a function is one line: serving.Main(handler.Handle).
package serving

import (
	"fmt"
	stdlog "log"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"go.opentelemetry.io/otel"

	"litefunctions.io/runtime/lf"
	"litefunctions.io/runtime/settings"
)

// Exit codes, the same as the Python runtime's (docs/operations.md).
const (
	ExitOK       = 0
	ExitFailure  = 1  // NATS unreachable at start
	ExitConfig   = 2  // a bad LF_* variable
	ExitTempFail = 75 // recycled after LF_STUCK_LIMIT handlers overran their deadline and kept running
)

// Main configures from the environment, serves handler until SIGTERM/SIGINT, drains and exits.
func Main(handler lf.HandlerFunc) {
	os.Exit(Run(os.Environ(), handler))
}

// Run is Main without the exit, for tests.
func Run(environ []string, handler lf.HandlerFunc) int {
	s, err := settings.New(environ)
	if err != nil {
		NewLog().Error("bad_settings", "error", err.Error())
		return ExitConfig
	}
	log := NewLog("function", s.Function, "namespace", s.Namespace)
	log.Info("started", "pid", os.Getpid(), "runtime", "go", "nats", settings.RedactedNatsURL(s.NatsURL),
		"concurrency", s.Concurrency, "queue_depth", s.QueueDepth)
	if s.SecretsDir != "" {
		_ = os.Setenv("LF_SECRETS_DIR", s.SecretsDir) // what lf.Secret reads
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	replica := NewReplica(s, handler, log)
	if s.LogCapture { // the handler's stdout/stderr per call, to LF_LOGS (capture.go)
		capture, err := installCapture(s.Namespace, s.Function, &os.Stdout, &os.Stderr)
		if err != nil {
			log.Warning("capture_failed", "error", err.Error())
		} else {
			stdlog.SetOutput(os.Stderr) // the log package's default logger (and slog's) took the original
			replica.capture = capture
			defer capture.close()
		}
	}
	env := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	if tracingConfigured(env) { // off: nothing of OpenTelemetry runs (tracing.go)
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warning("tracing_error", "error", err.Error()) }))
		tracing, err := setupTracing(env, log.Warning)
		if err != nil {
			log.Warning("tracing_failed", "error", err.Error())
		} else {
			replica.tracing = tracing
		}
	}
	go func() {
		sig := <-signals
		replica.Stop(ExitOK, fmt.Sprint(sig))
	}()
	code, err := replica.Run()
	if err != nil {
		log.Error("failed", "error", err.Error())
		return ExitFailure
	}
	return code
}
