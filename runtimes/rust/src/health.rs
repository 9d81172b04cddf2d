//! The replica's readiness endpoint (`LF_HEALTH_PORT` > 0): `GET /readyz` is 200 only when a call sent now would
//! be answered, 503 with the reason otherwise; the Python runtime's `lf_runtime.health`, with the same reasons.
//!
//! Ready means connected to NATS, the invoke subscription confirmed by the server (a PING/PONG round trip after
//! the SUB, at start and again after every reconnect, when async-nats has sent the SUB again) and not draining.
//! Nothing is done per call: the state changes with the connection's events and is read when a probe asks.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use async_nats::connection::State;
use async_nats::Client;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::metrics::{not_found, serve_http, Answer};
use crate::serving::round_trip;

/// The reasons `/readyz` gives, the same words as the Python and Go runtimes'.
pub const CONNECTING: &str = "connecting to NATS";
pub const DISCONNECTED: &str = "disconnected from NATS, reconnecting";
pub const UNCONFIRMED: &str = "reconnected to NATS, subscription not confirmed yet";
pub const DRAINING: &str = "draining";

/// What `/readyz` reads; every method is safe from any thread.
#[derive(Default)]
pub struct Readiness {
    subscribed: AtomicBool,
    draining: AtomicBool,
    /// Connections lost so far.
    links: AtomicU64,
    /// The value of `links` when the server last confirmed the subscription.
    confirmed: AtomicU64,
    client: OnceLock<Client>,
    /// Notified on every (re)connection: `confirm_reconnects` runs a round trip then.
    connected: Notify,
}

impl Readiness {
    /// Why a call would not be answered now (None when it would), given the connection's state.
    pub fn not_ready(&self, connected: bool) -> Option<&'static str> {
        if self.draining.load(Ordering::Acquire) {
            Some(DRAINING)
        } else if !self.subscribed.load(Ordering::Acquire) {
            Some(CONNECTING)
        } else if !connected {
            Some(DISCONNECTED)
        } else if self.confirmed.load(Ordering::Acquire) != self.links.load(Ordering::Acquire) {
            Some(UNCONFIRMED)
        } else {
            None
        }
    }

    /// `not_ready` with the state of the client (not connected before it exists).
    pub fn now(&self) -> Option<&'static str> {
        let connected = self
            .client
            .get()
            .is_some_and(|c| c.connection_state() == State::Connected);
        self.not_ready(connected)
    }

    /// The first SUB was confirmed by a round trip; `client` is the connection from now on.
    pub fn subscribed(&self, client: Client) {
        let _ = self.client.set(client);
        self.subscribed.store(true, Ordering::Release);
    }

    /// The stop began.
    pub fn draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// The connection was lost: the subscription is unconfirmed until a round trip after the reconnect.
    pub fn lost(&self) {
        self.links.fetch_add(1, Ordering::AcqRel);
    }

    /// The connection is up (again): wake `confirm_reconnects`.
    pub fn connected(&self) {
        self.connected.notify_one();
    }

    /// Run `flush` (a round trip behind the SUB the client sent again on reconnecting) and, if the connection
    /// was not lost again meanwhile, count the subscription as confirmed.
    pub async fn confirm<F, Fut, E>(&self, flush: F) -> Result<(), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        let links = self.links.load(Ordering::Acquire);
        flush().await?;
        if self.links.load(Ordering::Acquire) == links {
            // a loss from here on makes `links` differ again
            self.confirmed.store(links, Ordering::Release);
        }
        Ok(())
    }

    /// For ever: after each (re)connection, confirm the subscription with a round trip; `failed` gets the error
    /// of one that did not complete.
    pub async fn confirm_reconnects(self: Arc<Self>, failed: impl Fn(String)) {
        loop {
            self.connected.notified().await;
            let Some(client) = self.client.get() else {
                continue; // the first connection: confirmed by `run` itself
            };
            if let Err(error) = self.confirm(|| round_trip(client)).await {
                failed(error);
            }
        }
    }
}

/// The answer to `GET path`.
pub fn answer(not_ready: Option<&str>, path: &[u8]) -> Answer {
    if path != b"/readyz" {
        return not_found();
    }
    match not_ready {
        None => ("200 OK", "text/plain", "ready\n".to_owned()),
        Some(reason) => (
            "503 Service Unavailable",
            "text/plain",
            format!("not ready: {reason}\n"),
        ),
    }
}

/// Serve `GET /readyz` on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, readiness: Arc<Readiness>) {
    serve_http(listener, move |path| answer(readiness.now(), path)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    #[tokio::test]
    async fn readiness_follows_the_connection() {
        let r = Readiness::default();
        assert_eq!(r.not_ready(true), Some(CONNECTING));
        r.subscribed.store(true, Ordering::Release);
        assert_eq!(r.not_ready(true), None);
        r.lost();
        assert_eq!(r.not_ready(false), Some(DISCONNECTED));
        assert_eq!(
            r.not_ready(true),
            Some(UNCONFIRMED),
            "reconnected, no round trip yet"
        );
        assert!(r
            .confirm(|| async { Err::<(), _>("timeout") })
            .await
            .is_err());
        assert_eq!(
            r.not_ready(true),
            Some(UNCONFIRMED),
            "the round trip failed"
        );
        r.confirm(|| async {
            r.lost();
            Ok::<(), ()>(())
        })
        .await
        .unwrap();
        assert_eq!(
            r.not_ready(true),
            Some(UNCONFIRMED),
            "lost again during the round trip"
        );
        r.confirm(|| async { Ok::<(), ()>(()) }).await.unwrap();
        assert_eq!(r.not_ready(true), None);
        r.draining();
        assert_eq!(r.not_ready(true), Some(DRAINING));
        assert_eq!(r.now(), Some(DRAINING));
    }

    #[tokio::test]
    async fn listener_answers_readyz_only() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, Arc::new(Readiness::default())));
        let get = |request: &'static str| async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            answer
        };
        let not_ready = get("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            not_ready.starts_with("HTTP/1.1 503 Service Unavailable\r\n")
                && not_ready.ends_with("\r\n\r\nnot ready: connecting to NATS\n"),
            "{not_ready}"
        );
        assert!(get("GET /metrics HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 404"));
        server.abort();
        assert_eq!(
            answer(None, b"/readyz"),
            ("200 OK", "text/plain", "ready\n".to_owned())
        );
    }
}
