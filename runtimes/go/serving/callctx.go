package serving

import (
	"context"
	"sync"
	"time"
)

// callContext is the context a handler runs with (wrapped by callOutput with capture on): no values, the
// call's deadline, done at that deadline (Err: context.DeadlineExceeded) or when the call was answered
// (context.Canceled). It lives in the call, and the call's one timer both ends it and answers TIMEOUT; the
// context.WithDeadline and context.AfterFunc it replaces cost two more timers' worth of work, five more
// allocations and a map insert and delete per call.
//
// Contexts derived from it (context.WithTimeout(ctx, ...), context.AfterFunc) register through AfterFunc (the
// context package's afterFuncer), so they start no goroutine.
type callContext struct {
	deadline time.Time
	mu       sync.Mutex
	done     chan struct{} // made by the first Done, or closedDone when ended before that
	err      error
	afters   map[*func()]struct{} // AfterFunc's functions not run yet
}

var closedDone = func() chan struct{} {
	done := make(chan struct{})
	close(done)
	return done
}()

var _ context.Context = (*callContext)(nil)

func (x *callContext) Deadline() (time.Time, bool) { return x.deadline, true }

func (x *callContext) Done() <-chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.done == nil {
		x.done = make(chan struct{})
	}
	return x.done
}

func (x *callContext) Err() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.err
}

func (x *callContext) Value(any) any { return nil }

func (x *callContext) String() string { return "litefunctions.callContext" }

// AfterFunc runs f (on the goroutine that ends the context) once the context is done; stop unregisters it,
// true if it had not run.
func (x *callContext) AfterFunc(f func()) (stop func() bool) {
	x.mu.Lock()
	if x.err != nil {
		x.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	if x.afters == nil {
		x.afters = make(map[*func()]struct{})
	}
	key := &f
	x.afters[key] = struct{}{}
	x.mu.Unlock()
	return func() bool {
		x.mu.Lock()
		defer x.mu.Unlock()
		_, pending := x.afters[key]
		delete(x.afters, key)
		return pending
	}
}

// end makes the context done with err, unless it is already; then runs what AfterFunc registered.
func (x *callContext) end(err error) {
	x.mu.Lock()
	if x.err != nil {
		x.mu.Unlock()
		return
	}
	x.err = err
	if x.done == nil {
		x.done = closedDone
	} else {
		close(x.done)
	}
	afters := x.afters
	x.afters = nil
	x.mu.Unlock()
	for f := range afters {
		(*f)()
	}
}
