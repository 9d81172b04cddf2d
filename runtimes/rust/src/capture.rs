//! A function's stdout and stderr, captured per call and published to `lf.logs.{namespace}.{function}`
//! (the `JetStream` stream `LF_LOGS`, created by the ingestor; `lf logs NAME [--call ID]` reads it). The record is
//! the Python runtime's (`runtimes/python/src/lf_runtime/capture.py`):
//! `{"ts", "call_id", "namespace", "function", "replica": "host/pid", "lines": [{"stream", "text"}]}` plus
//! `dropped_bytes` when the call wrote more than [`MAX_BYTES`]. On unless `LF_LOG_CAPTURE=0`, as in Python.
//!
//! Two ways in:
//!
//! * `req.output.println(..)` / `req.output.eprintln(..)` ([`Output`]): always the call's own, whatever runs at
//!   the same time (Python's rule: output belongs to the call whose context wrote it).
//! * `println!`, `eprintln!`, `libc::write(1, ..)`, a child process's output: at start-up (before any thread)
//!   fds 1 and 2 are redirected (`dup2`) to two pipes read by one thread, which writes everything through to the
//!   original fds (so `lf dev` and `kubectl logs` still show it) and attributes what it reads. A write to a
//!   file descriptor carries no call, so the rule is: **what was written while exactly one handler was running
//!   belongs to that call; what was written while none or several ran is passed through and not attributed**
//!   (never guessed: with several calls in flight only the explicit API is attributed; with concurrency 1
//!   everything is). The set of running handlers changes only when a handler starts or returns, and at both
//!   points the pipes are first emptied (non-blocking reads, under the lock the reader thread reads under), so
//!   whatever is read was written while the set was the one it is attributed to: a handler's last line is
//!   never lost or given to the next call, and output from before a call stays out of it. A call that prints
//!   nothing costs one zero-timeout `poll` of both pipes when its handler starts and one when it returns. A sync
//!   handler past its deadline still counts as running (its later output is published when it returns, as in
//!   Python); an aborted async handler stops counting at once. The same rule as the Go runtime's.
//!
//! The runtime's own JSON log goes to the original stderr (`logs::set_fd`), never through the pipes.

use std::collections::HashMap;
use std::fmt;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::logs::{self, write_all};

/// Output kept per call; beyond it the rest is counted (`dropped_bytes`), not kept.
pub const MAX_BYTES: usize = 64 * 1024;
const READ_BUFFER: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

#[derive(Debug)]
struct Entry {
    call_id: String,
    size: usize,
    dropped: usize,
    chunks: Vec<(Stream, Vec<u8>)>,
}

#[derive(Debug, Default)]
struct State {
    /// Calls whose handler is running (sync ones past their deadline included), by the replica's call key.
    running: Vec<u64>,
    pending: HashMap<u64, Entry>,
}

/// The redirected descriptors.
#[derive(Debug)]
struct Pipes {
    stdout_read: RawFd,
    stderr_read: RawFd,
    /// Duplicates of the original fds 1 and 2 (where everything is written through).
    stdout_original: RawFd,
    stderr_original: RawFd,
    /// Held while reading the pipes (by the reader thread, or by a call starting or returning): one buffer each.
    reading: Mutex<[Vec<u8>; 2]>,
    reader: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Per-call output of one replica.
pub struct Capture {
    /// `lf.logs.{namespace}.{function}`
    pub subject: String,
    namespace: String,
    function: String,
    replica: String,
    max_bytes: usize,
    state: Mutex<State>,
    pipes: Option<Pipes>,
}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capture")
            .field("subject", &self.subject)
            .field("redirected", &self.pipes.is_some())
            .finish_non_exhaustive()
    }
}

impl Capture {
    /// Capture without redirecting fds 1 and 2: only the explicit API is captured (tests, embedding).
    pub fn new(namespace: &str, function: &str) -> Self {
        Self {
            subject: format!("lf.logs.{namespace}.{function}"),
            namespace: namespace.to_owned(),
            function: function.to_owned(),
            replica: format!("{}/{}", hostname(), std::process::id()),
            max_bytes: MAX_BYTES,
            state: Mutex::new(State::default()),
            pipes: None,
        }
    }

    /// Redirect fds 1 and 2 to pipes and start the reader thread. Call before starting other threads.
    pub fn install(namespace: &str, function: &str) -> std::io::Result<Arc<Self>> {
        let mut capture = Self::new(namespace, function);
        let stdout_original = cvt(unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) })?;
        let stderr_original = cvt(unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) })?;
        let (stdout_read, stdout_write) = pipe()?;
        let (stderr_read, stderr_write) = pipe()?;
        for fd in [stdout_read, stderr_read] {
            // The reads of a starting or returning call must not wait.
            let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
            cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
        }
        cvt(unsafe { libc::dup2(stdout_write, 1) })?;
        cvt(unsafe { libc::dup2(stderr_write, 2) })?;
        unsafe {
            libc::close(stdout_write);
            libc::close(stderr_write);
        }
        logs::set_fd(stderr_original);
        capture.pipes = Some(Pipes {
            stdout_read,
            stderr_read,
            stdout_original,
            stderr_original,
            reading: Mutex::new([vec![0; READ_BUFFER], vec![0; READ_BUFFER]]),
            reader: Mutex::new(None),
        });
        let capture = Arc::new(capture);
        let reader = capture.clone();
        let handle = std::thread::Builder::new()
            .name("lf-output".into())
            .spawn(move || reader.read_pipes())?;
        if let Some(pipes) = &capture.pipes {
            *pipes.reader.lock().unwrap() = Some(handle);
        }
        Ok(capture)
    }

    /// Put fds 1 and 2 back and let the reader write through what is left (at most `wait`).
    pub fn uninstall(&self, wait: Duration) {
        let Some(pipes) = &self.pipes else { return };
        let _ = std::io::Write::flush(&mut std::io::stdout());
        unsafe {
            // Closes the pipes' write ends (fds 1 and 2 were their only copies): the reader sees EOF.
            libc::dup2(pipes.stdout_original, 1);
            libc::dup2(pipes.stderr_original, 2);
        }
        logs::set_fd(2);
        let Some(handle) = pipes.reader.lock().unwrap().take() else {
            return;
        };
        let began = Instant::now();
        while !handle.is_finished() && began.elapsed() < wait {
            std::thread::sleep(Duration::from_millis(2));
        }
        if handle.is_finished() {
            let _ = handle.join();
        }
    }

    /// The handler of call `key` starts: from now on output is kept for `call_id`.
    pub fn begin(&self, key: u64, call_id: &str) {
        let _reading = self.drain(); // what was written before the call is not the call's
        let mut state = self.state.lock().unwrap();
        state.running.push(key);
        state.pending.insert(
            key,
            Entry {
                call_id: call_id.to_owned(),
                size: 0,
                dropped: 0,
                chunks: Vec::new(),
            },
        );
    }

    /// The handler of call `key` is done: its record (None if it wrote nothing); forgets the call.
    pub fn end(&self, key: u64) -> Option<Vec<u8>> {
        let reading = self.drain();
        let entry = {
            let mut state = self.state.lock().unwrap();
            state.running.retain(|&k| k != key);
            state.pending.remove(&key)
        };
        drop(reading);
        entry.and_then(|entry| self.record(&entry))
    }

    /// The record of what call `key` wrote so far (its deadline passed; the handler may go on writing).
    pub fn take_so_far(&self, key: u64) -> Option<Vec<u8>> {
        let _reading = self.drain();
        let mut state = self.state.lock().unwrap();
        let entry = state.pending.get_mut(&key)?;
        let record = self.record(entry);
        entry.chunks.clear();
        entry.size = 0;
        entry.dropped = 0;
        record
    }

    /// Bytes kept so far for call `key` (0 for a call not begun), without reading the pipes.
    pub fn kept(&self, key: u64) -> usize {
        self.state
            .lock()
            .unwrap()
            .pending
            .get(&key)
            .map_or(0, |entry| entry.size)
    }

    /// The explicit API's handle for call `key`.
    pub fn output(self: &Arc<Self>, key: u64) -> Output {
        Output {
            inner: Some((self.clone(), key)),
        }
    }

    fn add(&self, key: u64, stream: Stream, bytes: &[u8]) {
        let mut state = self.state.lock().unwrap();
        if let Some(entry) = state.pending.get_mut(&key) {
            Self::keep(entry, self.max_bytes, stream, bytes);
        }
    }

    fn keep(entry: &mut Entry, max_bytes: usize, stream: Stream, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if entry.size + bytes.len() > max_bytes {
            entry.dropped += bytes.len();
            return;
        }
        entry.size += bytes.len();
        let mut rest = bytes;
        if !matches!(entry.chunks.last(), Some((last, _)) if *last == stream) {
            // A line this stream left open (an unbuffered `eprintln!` writes its pieces one by one) goes on where
            // it began, even if the other stream wrote in between: up to its newline, the rest after.
            let open = entry.chunks.iter_mut().rev().find(|(s, _)| *s == stream);
            if let Some((_, text)) = open.filter(|(_, text)| !text.ends_with(b"\n")) {
                let end = rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |i| i + 1);
                text.extend_from_slice(&rest[..end]);
                rest = &rest[end..];
            }
        }
        if rest.is_empty() {
            return;
        }
        match entry.chunks.last_mut() {
            Some((last, text)) if *last == stream => text.extend_from_slice(rest),
            _ => entry.chunks.push((stream, rest.to_vec())),
        }
    }

    /// What the fd reader read: the running call's if exactly one runs.
    fn attribute(&self, stream: Stream, bytes: &[u8]) {
        let mut state = self.state.lock().unwrap();
        if let [key] = state.running[..] {
            if let Some(entry) = state.pending.get_mut(&key) {
                Self::keep(entry, self.max_bytes, stream, bytes);
            }
        }
    }

    fn record(&self, entry: &Entry) -> Option<Vec<u8>> {
        if entry.chunks.is_empty() && entry.dropped == 0 {
            return None;
        }
        let mut out = String::with_capacity(256 + entry.size * 11 / 10);
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        out.push_str("{\"ts\":");
        out.push_str(&Value::from(ts).to_string());
        for (key, value) in [
            ("call_id", entry.call_id.as_str()),
            ("namespace", &self.namespace),
            ("function", &self.function),
            ("replica", &self.replica),
        ] {
            out.push_str(",\"");
            out.push_str(key);
            out.push_str("\":");
            out.push_str(&Value::from(value).to_string());
        }
        out.push_str(",\"lines\":[");
        let mut first = true;
        for (stream, bytes) in &entry.chunks {
            for line in String::from_utf8_lossy(bytes).lines() {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str("{\"stream\":\"");
                out.push_str(stream.name());
                out.push_str("\",\"text\":");
                out.push_str(&Value::from(line).to_string());
                out.push('}');
            }
        }
        out.push(']');
        if entry.dropped > 0 {
            out.push_str(",\"dropped_bytes\":");
            out.push_str(&entry.dropped.to_string());
        }
        out.push('}');
        Some(out.into_bytes())
    }

    /// Read and attribute whatever is in the pipes now; returns the reading lock, so the caller can change the
    /// set of running calls before anything more is read.
    fn drain(&self) -> Option<MutexGuard<'_, [Vec<u8>; 2]>> {
        let pipes = self.pipes.as_ref()?;
        let mut buffers = pipes.reading.lock().unwrap();
        // One poll(2) for both pipes (nothing waiting is the common case), reads only for what has data.
        let ready = poll_pipes(pipes, [true, true], 0);
        if ready.iter().any(|&r| r) {
            self.read_available(pipes, &mut buffers, ready);
        }
        Some(buffers)
    }

    /// Empty the `ready` (non-blocking) pipes: attribute, then write through. Returns which reached EOF.
    fn read_available(
        &self,
        pipes: &Pipes,
        buffers: &mut [Vec<u8>; 2],
        ready: [bool; 2],
    ) -> [bool; 2] {
        let mut closed = [false; 2];
        let fds = [
            (pipes.stdout_read, pipes.stdout_original, Stream::Stdout),
            (pipes.stderr_read, pipes.stderr_original, Stream::Stderr),
        ];
        for (i, (read_fd, original, stream)) in fds.into_iter().enumerate() {
            if !ready[i] {
                continue;
            }
            let buffer = &mut buffers[i];
            loop {
                let n = unsafe { libc::read(read_fd, buffer.as_mut_ptr().cast(), buffer.len()) };
                match usize::try_from(n) {
                    Ok(0) => {
                        closed[i] = true;
                        break;
                    }
                    Ok(n) => {
                        self.attribute(stream, &buffer[..n]);
                        write_all(original, &buffer[..n]);
                        if n < buffer.len() {
                            break; // the pipe is (most likely) empty: spare the EAGAIN
                        }
                    }
                    Err(_) => {
                        let error = std::io::Error::last_os_error();
                        if error.kind() != std::io::ErrorKind::Interrupted {
                            // EAGAIN: empty; anything else: give up on this pipe
                            closed[i] = error.kind() != std::io::ErrorKind::WouldBlock;
                            break;
                        }
                    }
                }
            }
        }
        closed
    }

    /// The reader thread: wait for data, then empty the pipes under the reading lock; until both are closed.
    fn read_pipes(&self) {
        let Some(pipes) = &self.pipes else { return };
        let mut open = [true, true];
        while open.iter().any(|&o| o) {
            let ready = poll_pipes(pipes, open, -1);
            if !ready.iter().any(|&r| r) {
                continue; // EINTR
            }
            let mut buffers = pipes.reading.lock().unwrap();
            let closed = self.read_available(pipes, &mut buffers, ready);
            drop(buffers);
            for i in 0..2 {
                // POLLHUP without data is EOF too (read() said 0 above in that case)
                open[i] &= !closed[i];
            }
        }
    }
}

/// A call's own stdout and stderr (`req.output`): attributed to the call whatever else runs at the time, and
/// written through to the process's streams. Without capture (`LF_LOG_CAPTURE=0`, or a `Request` made in a
/// test) it only prints. Cheap to clone; usable from any thread while the call runs.
#[derive(Clone, Default)]
pub struct Output {
    inner: Option<(Arc<Capture>, u64)>,
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output")
            .field("captured", &self.inner.is_some())
            .finish()
    }
}

impl Output {
    /// Write `text` and a newline to stdout, as the call's output.
    pub fn println(&self, text: impl AsRef<str>) {
        self.write(Stream::Stdout, text.as_ref());
    }

    /// Write `text` and a newline to stderr, as the call's output.
    pub fn eprintln(&self, text: impl AsRef<str>) {
        self.write(Stream::Stderr, text.as_ref());
    }

    fn write(&self, stream: Stream, text: &str) {
        let mut line = String::with_capacity(text.len() + 1);
        line.push_str(text);
        line.push('\n');
        let Some((capture, key)) = &self.inner else {
            match stream {
                Stream::Stdout => print!("{line}"),
                Stream::Stderr => eprint!("{line}"),
            }
            return;
        };
        capture.add(*key, stream, line.as_bytes());
        match &capture.pipes {
            Some(pipes) => {
                let fd = match stream {
                    Stream::Stdout => pipes.stdout_original,
                    Stream::Stderr => pipes.stderr_original,
                };
                write_all(fd, line.as_bytes());
            }
            None => match stream {
                Stream::Stdout => print!("{line}"),
                Stream::Stderr => eprint!("{line}"),
            },
        }
    }
}

/// Which of the `open` pipes have data (or are closed), waiting at most `timeout_ms` (-1: until one has).
fn poll_pipes(pipes: &Pipes, open: [bool; 2], timeout_ms: libc::c_int) -> [bool; 2] {
    let mut polled =
        [(pipes.stdout_read, open[0]), (pipes.stderr_read, open[1])].map(|(fd, open)| {
            libc::pollfd {
                fd: if open { fd } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            }
        });
    if unsafe { libc::poll(polled.as_mut_ptr(), 2, timeout_ms) } <= 0 {
        return [false, false];
    }
    polled.map(|p| p.revents != 0)
}

fn cvt(value: libc::c_int) -> std::io::Result<libc::c_int> {
    if value < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(value)
    }
}

fn pipe() -> std::io::Result<(RawFd, RawFd)> {
    let mut fds = [0 as libc::c_int; 2];
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok((fds[0], fds[1]))
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return "localhost".to_owned();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(record: &[u8]) -> Value {
        serde_json::from_slice(record).unwrap()
    }

    /// A record's lines as (stream, text) pairs.
    fn lines_of(record: &Value) -> Vec<(String, String)> {
        let line = |l: &Value| {
            (
                l["stream"].as_str().unwrap().to_owned(),
                l["text"].as_str().unwrap().to_owned(),
            )
        };
        record["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(line)
            .collect()
    }

    #[test]
    fn record_has_the_python_shape() {
        let capture = Arc::new(Capture::new("default", "hello"));
        capture.begin(1, "call-1");
        let output = capture.output(1);
        output.println("first");
        output.println("second\nthird");
        output.eprintln("oops é");
        output.println("again");
        let record = parse(&capture.end(1).unwrap());
        let object = record.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["call_id", "function", "lines", "namespace", "replica", "ts"]
        );
        assert_eq!(record["call_id"], "call-1");
        assert_eq!(
            (record["namespace"].as_str(), record["function"].as_str()),
            (Some("default"), Some("hello"))
        );
        assert!(record["replica"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{}", std::process::id())));
        assert!(record["ts"].as_f64().unwrap() > 1.7e9);
        let lines = lines_of(&record);
        let expect = [
            ("stdout", "first"),
            ("stdout", "second"),
            ("stdout", "third"),
            ("stderr", "oops é"),
            ("stdout", "again"),
        ];
        assert_eq!(lines, expect.map(|(s, t)| (s.to_owned(), t.to_owned())));
        assert!(capture.end(1).is_none(), "forgotten once taken");
    }

    #[test]
    fn a_line_written_in_pieces_stays_one_line_when_the_other_stream_writes_between() {
        let capture = Arc::new(Capture::new("ns", "f"));
        capture.begin(1, "pieces");
        capture.add(1, Stream::Stderr, b"stderr ");
        capture.add(1, Stream::Stdout, b"output t\n");
        capture.add(1, Stream::Stderr, b"t\nnext ");
        capture.add(1, Stream::Stderr, b"line\n");
        let record = parse(&capture.end(1).unwrap());
        let lines = lines_of(&record);
        let want = [
            ("stderr", "stderr t"),
            ("stdout", "output t"),
            ("stderr", "next line"),
        ];
        assert_eq!(lines, want.map(|(s, t)| (s.to_owned(), t.to_owned())));
    }

    #[test]
    fn silent_calls_publish_nothing_and_output_is_capped() {
        let capture = Arc::new(Capture::new("ns", "f"));
        capture.begin(1, "quiet");
        assert!(capture.end(1).is_none());
        capture.begin(2, "loud");
        let output = capture.output(2);
        let line = "x".repeat(1000);
        for _ in 0..70 {
            output.println(&line);
        }
        let record = parse(&capture.end(2).unwrap());
        assert_eq!(record["lines"].as_array().unwrap().len(), 65); // 65 × 1001 bytes ≤ 64 KiB
        assert_eq!(record["dropped_bytes"], 5 * 1001);
    }

    #[test]
    fn fd_output_goes_to_the_only_running_call() {
        let capture = Capture::new("ns", "f");
        capture.attribute(Stream::Stdout, b"before any call\n");
        capture.begin(1, "a");
        capture.attribute(Stream::Stdout, b"a's line\n");
        capture.begin(2, "b");
        capture.attribute(Stream::Stderr, b"whose? not guessed\n");
        let b = parse(&capture.end(2).unwrap_or_else(|| b"{\"lines\":[]}".to_vec()));
        assert_eq!(b["lines"].as_array().unwrap().len(), 0);
        capture.attribute(Stream::Stderr, b"a's again\n");
        let a = parse(&capture.end(1).unwrap());
        let texts: Vec<&str> = a["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["text"].as_str().unwrap())
            .collect();
        assert_eq!(texts, ["a's line", "a's again"]);
    }

    #[test]
    fn take_so_far_keeps_the_call() {
        let capture = Arc::new(Capture::new("ns", "f"));
        capture.begin(7, "slow");
        capture.output(7).println("before the deadline");
        let first = parse(&capture.take_so_far(7).unwrap());
        assert_eq!(first["lines"][0]["text"], "before the deadline");
        assert!(capture.take_so_far(7).is_none());
        capture.attribute(Stream::Stdout, b"after it\n");
        let last = parse(&capture.end(7).unwrap());
        assert_eq!(last["lines"][0]["text"], "after it");
    }
}
