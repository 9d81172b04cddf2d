package asyncworker

// Events counts what the worker does (the replica's metrics implement it; Nop counts nothing).
type Events interface {
	AsyncRun()             // an attempt started
	AsyncRetry()           // an attempt failed and was scheduled again
	AsyncDead()            // a call was dead-lettered
	AsyncZombie()          // a result was dropped: another delivery of the call moved its record on
	SetAsyncPending(n int) // the function's calls not delivered yet, as of the last pulled one
}

// Nop is Events that counts nothing.
type Nop struct{}

func (Nop) AsyncRun()           {}
func (Nop) AsyncRetry()         {}
func (Nop) AsyncDead()          {}
func (Nop) AsyncZombie()        {}
func (Nop) SetAsyncPending(int) {}
