// Package callctx links a call's context to the runtime's per-call output (lf.Stdout, lf.Stderr, lf.Logger)
// without the lf package depending on the serving package.
package callctx

import "io"

// Key is the context key under which the runtime puts the call's Output.
type Key struct{}

// Output is where a call's own writers come from: what they get goes to the process's stream and, attributed
// to the call whatever else runs at the same time, to its captured output (LF_LOGS).
type Output interface {
	Stdout() io.Writer
	Stderr() io.Writer
}
