//! How a user's `handle` runs: a sync `fn(Request) -> Result<Response>` on tokio's blocking pool (it may
//! block, and it cannot be cancelled), an `async fn` as a task (cancelled at its deadline). The marker types
//! let one generic `serve(handle)` accept either, as axum does for its handlers.

use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::types::{Request, Response, Result};

/// A started handler: its join handle, and whether it can be cancelled (async) or only abandoned (sync).
pub struct Started {
    pub join: JoinHandle<Result<Response>>,
    pub cancellable: bool,
}

/// Implemented for `fn(Request) -> Result<Response>` and `async fn(Request) -> Result<Response>`.
pub trait Handler<M>: Send + Sync + 'static {
    fn start(self: Arc<Self>, req: Request) -> Started;
}

#[doc(hidden)]
pub struct Blocking;
#[doc(hidden)]
pub struct Async;

impl<F> Handler<Blocking> for F
where
    F: Fn(Request) -> Result<Response> + Send + Sync + 'static,
{
    fn start(self: Arc<Self>, req: Request) -> Started {
        Started {
            join: tokio::task::spawn_blocking(move || self(req)),
            cancellable: false,
        }
    }
}

impl<F, Fut> Handler<Async> for F
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response>> + Send + 'static,
{
    fn start(self: Arc<Self>, req: Request) -> Started {
        Started {
            join: tokio::spawn(self(req)),
            cancellable: true,
        }
    }
}

/// The message of a panic payload (`panic!("...")` carries a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_owned())
}
