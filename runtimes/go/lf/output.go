package lf

import (
	"context"
	"io"
	"log"
	"os"

	"litefunctions.io/runtime/internal/callctx"
)

// A function's output during a call is captured and published, one message per call, to the JetStream stream
// LF_LOGS (subject lf.logs.{namespace}.{function}; `lf logs NAME [--call ID]` prints it), and still reaches
// the process's own stdout and stderr. LF_LOG_CAPTURE=0 on the runtime turns capture off.
//
// Attribution. Stdout(ctx), Stderr(ctx) and Logger(ctx) write under the call's id, always, whatever else runs
// at the same time, and keep the order of what they write. Plain os.Stdout and os.Stderr (fmt.Println, the
// log package's default logger, slog's default handler) are read through pipes: a process cannot tell which
// goroutine wrote a byte to them, so what they carry is attributed to a call only when that call's handler was
// the only one running in the replica while it was written (always the case with concurrency 1). Output
// written while several handlers run, or while none does, reaches the process's streams but no call's record.
// Lines of one stream keep their order; between stdout and stderr order is kept only as far as the pipes are
// read apart. A call keeps at most 64 KiB of output; the rest is counted as dropped_bytes.

// Stdout is the call's own standard output (os.Stdout outside a call, e.g. in a handler's unit test).
func Stdout(ctx context.Context) io.Writer {
	if out, ok := ctx.Value(callctx.Key{}).(callctx.Output); ok {
		return out.Stdout()
	}
	return os.Stdout
}

// Stderr is the call's own standard error (os.Stderr outside a call).
func Stderr(ctx context.Context) io.Writer {
	if out, ok := ctx.Value(callctx.Key{}).(callctx.Output); ok {
		return out.Stderr()
	}
	return os.Stderr
}

// Logger is a log.Logger (standard flags) writing to Stderr(ctx): the log package's default logger, but
// attributed to the call.
func Logger(ctx context.Context) *log.Logger {
	return log.New(Stderr(ctx), "", log.LstdFlags)
}
