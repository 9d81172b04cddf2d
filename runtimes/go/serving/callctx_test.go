package serving

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A context derived from a call's sees its deadline and ends with it, with the same error as under
// context.WithDeadline; one that ends first leaves the call's alone.
func TestCallContextDerived(t *testing.T) {
	x := &callContext{deadline: time.Now().Add(time.Hour)}
	if d, ok := x.Deadline(); !ok || !d.Equal(x.deadline) {
		t.Fatalf("Deadline() = %v, %v", d, ok)
	}
	child, cancelChild := context.WithTimeout(x, time.Hour)
	defer cancelChild()
	if d, _ := child.Deadline(); !d.Equal(x.deadline) {
		t.Fatalf("the child's deadline %v is not the call's %v", d, x.deadline)
	}
	early, cancelEarly := context.WithCancel(x)
	cancelEarly()
	if x.Err() != nil || len(x.afters) != 1 {
		t.Fatalf("an ended child changed the call's context: err %v, %d registered", x.Err(), len(x.afters))
	}
	<-early.Done()
	ran := make(chan struct{})
	stopped := context.AfterFunc(x, func() { close(ran) })
	stop := context.AfterFunc(x, func() { t.Error("a stopped AfterFunc ran") })
	if !stop() {
		t.Fatal("stop() before the end = false")
	}
	done := x.Done()
	x.end(context.DeadlineExceeded)
	x.end(context.Canceled) // the first end wins
	<-done
	<-child.Done()
	<-ran
	if !errors.Is(x.Err(), context.DeadlineExceeded) || !errors.Is(child.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err() = %v, child's %v; want DeadlineExceeded", x.Err(), child.Err())
	}
	if !errors.Is(context.Cause(child), context.DeadlineExceeded) {
		t.Fatalf("Cause(child) = %v", context.Cause(child))
	}
	if stopped() {
		t.Fatal("stop() after the function ran = true")
	}
}

// Done after the end is a closed channel; AfterFunc after the end runs at once.
func TestCallContextEndedBeforeDone(t *testing.T) {
	x := &callContext{deadline: time.Now()}
	x.end(context.Canceled)
	<-x.Done()
	ran := make(chan struct{})
	context.AfterFunc(x, func() { close(ran) })
	<-ran
	if !errors.Is(x.Err(), context.Canceled) {
		t.Fatalf("Err() = %v", x.Err())
	}
}
