//! `LiteFunctions` Rust runtime: serves one function over NATS (docs/architecture.md, "Runtimes").
//!
//! A function is a crate exporting `pub fn handle(req: Request) -> Result<Response>` (or an `async fn`);
//! `lf dev` and the image build generate a binary crate whose `main` is `lf_runtime::main(handler::handle)`.
//! The envelope codec is `lf-native`'s pure-Rust core.

pub mod capture;
pub mod handlers;
pub mod health;
pub mod logs;
pub mod metrics;
pub mod serving;
pub mod settings;
pub mod tracing;
pub mod types;

#[cfg(test)]
mod facts;

pub use capture::Output;
pub use handlers::Handler;
pub use serving::{EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_TEMPFAIL};
/// The `time` crate, whose `OffsetDateTime` is a `CloudEvent`'s time.
pub use time;
pub use types::{secret, BadRequest, CloudEvent, Error, Request, Response, Result};

use std::sync::Arc;

use serde_json::json;

/// Configure from the environment, serve `handler` until SIGTERM/SIGINT, drain and exit.
pub fn main<M: 'static, H: Handler<M>>(handler: H) -> ! {
    let code = run(std::env::vars(), handler);
    std::process::exit(code)
}

/// `main` without the exit, for tests: returns the exit code.
pub fn run<M: 'static, H: Handler<M>>(
    vars: impl IntoIterator<Item = (String, String)>,
    handler: H,
) -> i32 {
    let vars: std::collections::HashMap<String, String> = vars.into_iter().collect();
    let traced = tracing::configured(&vars);
    let settings = match settings::Settings::from_env(vars) {
        Ok(settings) => settings,
        Err(error) => {
            logs::Log::default().error("bad_settings", &[("error", json!(error))]);
            return EXIT_CONFIG;
        }
    };
    let log = logs::Log::new(vec![
        ("function", json!(settings.function)),
        ("namespace", json!(settings.namespace)),
    ]);
    log.info(
        "started",
        &[
            ("pid", json!(std::process::id())),
            ("runtime", json!("rust")),
            (
                "nats",
                json!(settings::redacted_nats_url(&settings.nats_url)),
            ),
            ("concurrency", json!(settings.concurrency)),
            ("queue_depth", json!(settings.queue_depth)),
            ("worker_threads", json!(settings.worker_threads)),
        ],
    );
    let panic_log = log.clone();
    std::panic::set_hook(Box::new(move |info| {
        // A handler's panic is answered 500 and logged here as JSON, not as the default hook's text.
        panic_log.error("handler_panicked", &[("error", json!(info.to_string()))]);
    }));
    if let Some(dir) = &settings.secrets_dir {
        std::env::set_var("LF_SECRETS_DIR", dir); // what `secret()` reads; before any thread starts
    }
    // Before any thread starts: fds 1 and 2 become pipes (capture.rs), the log keeps the real stderr.
    let capture = if settings.log_capture {
        match capture::Capture::install(&settings.namespace, &settings.function) {
            Ok(capture) => Some(capture),
            Err(error) => {
                log.warning(
                    "capture_unavailable",
                    &[("error", json!(error.to_string()))],
                );
                None
            }
        }
    } else {
        None
    };
    let tracing = if traced {
        match tracing::Tracing::setup() {
            Ok(tracing) => Some(Arc::new(tracing)),
            Err(error) => {
                log.warning("tracing_unavailable", &[("error", json!(error))]);
                None
            }
        }
    } else {
        None
    };
    let runtime = match tokio_runtime(settings.worker_threads) {
        Ok(runtime) => runtime,
        Err(error) => {
            log.error("failed", &[("error", json!(error.to_string()))]);
            return EXIT_FAILURE;
        }
    };
    let replica = serving::Replica::new(settings, Arc::new(handler), log.clone())
        .with_capture(capture.clone())
        .with_tracing(tracing.clone());
    let code = match runtime.block_on(replica.run()) {
        Ok(code) => code,
        Err(error) => {
            log.error("failed", &[("error", json!(error))]);
            EXIT_FAILURE
        }
    };
    if let Some(tracing) = tracing {
        if let Err(error) = tracing.shutdown() {
            log.warning("tracing_shutdown_failed", &[("error", json!(error))]);
        }
    }
    if let Some(capture) = capture {
        capture.uninstall(std::time::Duration::from_secs(1));
    }
    code
}

/// tokio's current-thread scheduler for one worker, else the multi-thread one with `workers` workers.
///
/// One worker is the default because it is the cheaper one per call (docs/performance.md, "The three runtimes"):
/// a woken task goes to the back of its queue, so every call read in one socket read is answered before the NATS
/// connection's task runs again and writes all the answers at once. The multi-thread scheduler runs a woken task next (its
/// "LIFO slot"), so the connection's task writes each answer by itself: one `writev` per call.
fn tokio_runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    builder.enable_all().build()
}

#[cfg(test)]
mod tests {
    use super::tokio_runtime;
    use tokio::runtime::RuntimeFlavor;

    #[test]
    fn one_worker_is_the_current_thread_scheduler_more_is_multi_thread() {
        let flavor = |workers| tokio_runtime(workers).unwrap().handle().runtime_flavor();
        assert_eq!(flavor(1), RuntimeFlavor::CurrentThread);
        assert_eq!(flavor(3), RuntimeFlavor::MultiThread);
    }
}
