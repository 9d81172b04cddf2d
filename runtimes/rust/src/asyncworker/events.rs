//! What the async worker reports of itself, as events the replica's metrics count (`crate::metrics`).

/// What the worker counts (Prometheus metrics implement it; the default counts nothing).
pub trait AsyncCounters: Send + Sync + 'static {
    /// An attempt started (the record moved to `running`).
    fn async_run(&self) {}
    /// An attempt failed and a retry was scheduled.
    fn async_retry(&self) {}
    /// A call went to the dead letters.
    fn async_dead(&self) {}
    /// A zombie's result was dropped (the record had moved on).
    fn async_zombie(&self) {}
    /// The consumer's pending count, from the last delivery's ack subject.
    fn set_async_pending(&self, _pending: u64) {}
}
