//! fd 1 and 2 redirected for real: the test runs itself again as a child process (the redirection is
//! process-wide, and the test harness's own output capture bypasses fds), which installs the capture, prints with
//! `println!`/`eprintln!` around calls, and prints the records it got once the fds are back.

use std::process::Command;
use std::time::{Duration, Instant};

use lf_runtime::capture::Capture;

const CHILD: &str = "LF_CAPTURE_FD_CHILD";

#[test]
fn println_is_attributed_and_written_through() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "println_is_attributed_and_written_through",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    // Everything still reaches the process's own streams.
    for line in [
        "one: out",
        "one: last words",
        "ambiguous",
        "outside any call",
    ] {
        assert!(
            stdout.lines().any(|l| l.ends_with(line)), // the harness writes "test ... " before the first
            "{line:?} not written through:\n{stdout}"
        );
    }
    assert!(stderr.lines().any(|l| l == "one: err"), "{stderr}");
    let records: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("RECORD "))
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
    assert_eq!(records.len(), 1, "{stdout}");
    let record = &records[0];
    assert_eq!(record["call_id"], "call-one");
    let lines: Vec<(&str, &str)> = record["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["stream"].as_str().unwrap(), l["text"].as_str().unwrap()))
        .collect();
    // Each stream's lines in order; between the two pipes the order is only as far as they were read apart.
    let of = |stream: &str| -> Vec<&str> {
        lines
            .iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, t)| *t)
            .collect()
    };
    assert_eq!(of("stdout"), ["one: out", "one: last words"], "{lines:?}");
    assert_eq!(of("stderr"), ["one: err"], "{lines:?}");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        stdout.contains("NONE two") && stdout.contains("NONE three"),
        "{stdout}"
    );
}

fn child() {
    let capture = Capture::install("ns", "f").unwrap();
    let mut results = Vec::new();
    println!("outside any call");
    capture.begin(1, "call-one");
    println!("one: out");
    // No drain runs until end(): only the reader thread can attribute this line. Wait until it has.
    let waited = Instant::now();
    while capture.kept(1) == 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the reader thread did not attribute the line"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!("one: err");
    println!("one: last words"); // most likely read by end() itself
    results.push(capture.end(1).map_or("NONE one".to_owned(), record_line));
    capture.begin(2, "call-two");
    capture.begin(3, "call-three");
    println!("ambiguous");
    results.push(capture.end(3).map_or("NONE three".to_owned(), record_line));
    results.push(capture.end(2).map_or("NONE two".to_owned(), record_line));
    capture.uninstall(Duration::from_secs(2));
    for line in results {
        println!("{line}");
    }
}

fn record_line(record: Vec<u8>) -> String {
    format!("RECORD {}", String::from_utf8(record).unwrap())
}
