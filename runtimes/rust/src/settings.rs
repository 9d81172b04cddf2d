//! The runtime's settings, read from a list of environment variables (`Settings::from_env(std::env::vars())`):
//! the same `LF_*` variables as the Python runtime (docs/operations.md "Runtime settings"). Every bad value is
//! an error naming the variable; `main` turns it into exit code 2.

use std::collections::HashMap;
use std::time::Duration;

pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
pub const DEFAULT_CONCURRENCY: usize = 16;
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;
pub const MAX_CONCURRENCY: usize = 10_000;
pub const MAX_WORKER_THREADS: usize = 1024;

#[derive(Debug, Clone)]
pub struct Settings {
    pub function: String,
    pub namespace: String,
    pub nats_url: String,
    pub concurrency: usize,
    pub queue_depth: usize,
    pub max_response_bytes: usize,
    pub stuck_limit: usize,
    pub drain_timeout: Duration,
    pub secrets_dir: Option<String>,
    pub connect_timeout: Duration,
    /// `LF_METRICS_PORT`: serve `GET /metrics` on this port (0: no listener).
    pub metrics_port: u16,
    /// `LF_METRICS_HOST` (default 127.0.0.1).
    pub metrics_host: String,
    /// `LF_HEALTH_PORT`: serve `GET /readyz` on this port (0: no listener; `crate::health`).
    pub health_port: u16,
    /// `LF_HEALTH_HOST` (default 127.0.0.1).
    pub health_host: String,
    /// `LF_LOG_CAPTURE` (default on, `0` turns it off): the function's stdout/stderr per call, to `LF_LOGS`.
    pub log_capture: bool,
    /// `LF_WORKER_THREADS` (Rust only, default 1): threads running NATS I/O and async handlers. 1 is tokio's
    /// current-thread scheduler, which answers a burst of calls with one socket write (docs/performance.md);
    /// more is the multi-thread scheduler with that many workers. Sync handlers run on the blocking pool either way.
    pub worker_threads: usize,
}

impl Settings {
    /// Parse and validate the `LF_*` variables; variables set to "" count as unset.
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, String> {
        let env: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k, v.trim().to_owned()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        let get = |key: &str| env.get(key).map(String::as_str);
        let concurrency = integer(
            get,
            "LF_CONCURRENCY",
            DEFAULT_CONCURRENCY,
            1,
            MAX_CONCURRENCY,
        )?;
        let metrics_port =
            u16::try_from(integer(get, "LF_METRICS_PORT", 0, 0, 65_535)?).unwrap_or_default();
        let health_port =
            u16::try_from(integer(get, "LF_HEALTH_PORT", 0, 0, 65_535)?).unwrap_or_default();
        if health_port != 0 && health_port == metrics_port {
            return Err(format!(
                "LF_HEALTH_PORT={health_port} is also LF_METRICS_PORT: the two listeners need their own ports"
            ));
        }
        Ok(Self {
            function: name(get("LF_FUNCTION"), "LF_FUNCTION", "function name")?,
            namespace: name(
                Some(get("LF_NAMESPACE").unwrap_or("default")),
                "LF_NAMESPACE",
                "namespace",
            )?,
            nats_url: nats_url(get("LF_NATS_URL").unwrap_or(DEFAULT_NATS_URL))?,
            concurrency,
            queue_depth: integer(get, "LF_QUEUE_DEPTH", concurrency, 0, 1_000_000)?,
            max_response_bytes: integer(
                get,
                "LF_MAX_RESPONSE_BYTES",
                DEFAULT_MAX_RESPONSE_BYTES,
                0,
                u32::MAX as usize,
            )?,
            stuck_limit: integer(get, "LF_STUCK_LIMIT", 3, 1, MAX_CONCURRENCY)?,
            drain_timeout: seconds(get, "LF_DRAIN_TIMEOUT", 30.0)?,
            secrets_dir: get("LF_SECRETS_DIR").map(str::to_owned),
            connect_timeout: seconds(get, "LF_CONNECT_TIMEOUT", 10.0)?,
            metrics_port,
            metrics_host: get("LF_METRICS_HOST").unwrap_or("127.0.0.1").to_owned(),
            health_port,
            health_host: get("LF_HEALTH_HOST").unwrap_or("127.0.0.1").to_owned(),
            log_capture: get("LF_LOG_CAPTURE") != Some("0"),
            worker_threads: integer(get, "LF_WORKER_THREADS", 1, 1, MAX_WORKER_THREADS)?,
        })
    }
}

/// The server list without user names, passwords or tokens, for logs.
pub fn redacted_nats_url(value: &str) -> String {
    value
        .split(',')
        .map(|server| {
            let server = server.trim();
            let (scheme, rest) = server.split_once("://").unwrap_or(("nats", server));
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            format!("{scheme}://{}", host.split('/').next().unwrap_or(""))
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn name(value: Option<&str>, key: &str, what: &str) -> Result<String, String> {
    let Some(value) = value else {
        return Err(format!("{key} is required: the {what} this replica serves"));
    };
    if _native::routing::is_dns1123_label(value) {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{key}: {what} {value:?} is not a DNS-1123 label (lowercase letters, digits and '-', at most 63)"
        ))
    }
}

fn nats_url(value: &str) -> Result<String, String> {
    for server in value.split(',') {
        let server = server.trim();
        let ok = server.split_once("://").is_some_and(|(scheme, rest)| {
            matches!(scheme, "nats" | "tls" | "ws" | "wss") && !rest.is_empty()
        });
        if !ok {
            return Err(format!(
                "LF_NATS_URL={value:?}: {server:?} is not a nats://, tls://, ws:// or wss:// URL"
            ));
        }
    }
    Ok(value.to_owned())
}

fn integer<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
    key: &str,
    default: usize,
    low: usize,
    high: usize,
) -> Result<usize, String> {
    let Some(raw) = get(key) else {
        return Ok(default);
    };
    let value: usize = raw
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{key}={raw:?} is not an integer"))?;
    if value < low || value > high {
        return Err(format!(
            "{key}={raw:?} is out of range: must be between {low} and {high}"
        ));
    }
    Ok(value)
}

fn seconds<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
    key: &str,
    default: f64,
) -> Result<Duration, String> {
    let raw = get(key);
    let value = match raw {
        None => default,
        Some(raw) => raw
            .strip_suffix('s')
            .unwrap_or(raw)
            .parse::<f64>()
            .map_err(|_| {
                format!("{key}={raw:?} is not a number of seconds (e.g. '30' or '2.5s')")
            })?,
    };
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("{key}={raw:?} must be zero or a positive number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults() {
        let s = Settings::from_env(env(&[("LF_FUNCTION", "hello"), ("LF_NAMESPACE", "")])).unwrap();
        assert_eq!(s.namespace, "default");
        assert_eq!((s.concurrency, s.queue_depth), (16, 16));
        assert_eq!(s.max_response_bytes, 6 << 20);
        assert_eq!(s.drain_timeout, Duration::from_secs(30));
        assert_eq!((s.metrics_port, s.metrics_host.as_str()), (0, "127.0.0.1"));
        assert!(s.log_capture);
        assert_eq!(s.worker_threads, 1);
        let s = Settings::from_env(env(&[
            ("LF_FUNCTION", "hello"),
            ("LF_METRICS_PORT", "9100"),
            ("LF_LOG_CAPTURE", "0"),
            ("LF_WORKER_THREADS", "4"),
        ]))
        .unwrap();
        assert_eq!(s.metrics_port, 9100);
        assert!(!s.log_capture);
        assert_eq!(s.worker_threads, 4);
    }

    #[test]
    fn errors_name_the_variable() {
        for (key, value) in [
            ("LF_FUNCTION", "Bad_Name"),
            ("LF_CONCURRENCY", "0"),
            ("LF_DRAIN_TIMEOUT", "-1"),
            ("LF_NATS_URL", "http://x"),
            ("LF_CONNECT_TIMEOUT", "soon"),
            ("LF_METRICS_PORT", "65536"),
            ("LF_HEALTH_PORT", "65536"),
            ("LF_WORKER_THREADS", "0"),
        ] {
            let mut vars = env(&[("LF_FUNCTION", "ok")]);
            vars.push((key.to_owned(), value.to_owned()));
            let err = Settings::from_env(vars).unwrap_err();
            assert!(err.contains(key), "{key}: {err}");
        }
        assert!(Settings::from_env(env(&[]))
            .unwrap_err()
            .contains("LF_FUNCTION"));
    }

    #[test]
    fn health_listener() {
        let s = Settings::from_env(env(&[("LF_FUNCTION", "hello")])).unwrap();
        assert_eq!((s.health_port, s.health_host.as_str()), (0, "127.0.0.1"));
        let s = Settings::from_env(env(&[
            ("LF_FUNCTION", "hello"),
            ("LF_HEALTH_PORT", "8081"),
            ("LF_HEALTH_HOST", "0.0.0.0"),
            ("LF_METRICS_PORT", "9091"),
        ]))
        .unwrap();
        assert_eq!((s.health_port, s.health_host.as_str()), (8081, "0.0.0.0"));
        let err = Settings::from_env(env(&[
            ("LF_FUNCTION", "hello"),
            ("LF_HEALTH_PORT", "9091"),
            ("LF_METRICS_PORT", "9091"),
        ]))
        .unwrap_err();
        assert!(
            err.contains("LF_HEALTH_PORT") && err.contains("own ports"),
            "{err}"
        );
    }

    #[test]
    fn redacts() {
        assert_eq!(
            redacted_nats_url("nats://u:p@a:4222, tls://b:1"),
            "nats://a:4222,tls://b:1"
        );
    }
}
