//! The runtime's structured log: one JSON object per line on stderr, with the Python runtime's events and
//! leading fields (`ts`, `level`, `event`, `function`, `namespace`). Successful calls are not logged.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Where the log goes: fd 2, or the original stderr once fd 2 is a capture pipe (`capture.rs`).
static FD: AtomicI32 = AtomicI32::new(2);

/// Send the log to `fd` from now on.
pub fn set_fd(fd: i32) {
    FD.store(fd, Ordering::Relaxed);
}

#[derive(Debug, Clone, Default)]
pub struct Log {
    context: Vec<(&'static str, Value)>,
}

impl Log {
    pub fn new(context: Vec<(&'static str, Value)>) -> Self {
        Self { context }
    }

    pub fn event(&self, level: &str, event: &str, fields: &[(&str, Value)]) {
        let mut line = String::with_capacity(256);
        line.push_str("{\"ts\":\"");
        line.push_str(&timestamp());
        line.push_str("\",\"level\":");
        line.push_str(&Value::from(level).to_string());
        line.push_str(",\"event\":");
        line.push_str(&Value::from(event).to_string());
        let context = self.context.iter().map(|(k, v)| (*k, v));
        for (key, value) in context.chain(fields.iter().map(|(k, v)| (*k, v))) {
            line.push(',');
            line.push_str(&Value::from(key).to_string());
            line.push(':');
            line.push_str(&value.to_string());
        }
        line.push_str("}\n");
        // One write(2) per line (under PIPE_BUF lines are never interleaved with other writers').
        write_all(FD.load(Ordering::Relaxed), line.as_bytes());
    }

    pub fn info(&self, event: &str, fields: &[(&str, Value)]) {
        self.event("info", event, fields);
    }

    pub fn warning(&self, event: &str, fields: &[(&str, Value)]) {
        self.event("warning", event, fields);
    }

    pub fn error(&self, event: &str, fields: &[(&str, Value)]) {
        self.event("error", event, fields);
    }
}

/// Write all of `bytes` to `fd`, retrying on EINTR; give up quietly on any other error.
pub(crate) fn write_all(fd: i32, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        match usize::try_from(n) {
            Ok(n) if n > 0 => bytes = &bytes[n..],
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => return,
        }
    }
}

/// UTC `YYYY-MM-DDTHH:MM:SS.mmmZ` without a date crate (civil-from-days, Howard Hinnant's algorithm).
fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        now.subsec_millis()
    )
}
