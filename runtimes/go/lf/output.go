package lf

import (
	"context"
	"io"
	"log"
	"os"

	"litefunctions.io/runtime/internal/callctx"
)

// Stdout is the call's own standard output (os.Stdout outside a call, e.g. in a handler's unit test).
//
// Attribution. Stdout(ctx), Stderr(ctx) and Logger(ctx) write under the call's id, always, whatever else runs
// at the same time, and keep the order of what they write. Plain os.Stdout and os.Stderr are read through pipes:
// a process cannot tell which goroutine wrote a byte to them, so what they carry is attributed to a call only
// when that call's handler was the only one running in the replica while it was written (always the case with
// concurrency 1). Output written while several handlers run, or while none does, reaches the process's streams
// but no call's record. Lines of one stream keep their order; between stdout and stderr order is kept only as
// far as the pipes are read apart. A call keeps at most 64 KiB of output; the rest is counted as dropped_bytes.
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
