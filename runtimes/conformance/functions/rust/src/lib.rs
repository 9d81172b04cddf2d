//! The conformance function in Rust: one behaviour per first path segment (see the suite's README).

use lf_runtime::{Request, Response, Result};
use serde_json::json;
use sha2::{Digest, Sha256};

pub fn handle(req: Request) -> Result<Response> {
    let mut path = req.path.trim_matches('/').to_owned();
    if path == "runs" || path.starts_with("runs/") {
        count_run(&req); // the async suite counts runs
        path = path["runs".len()..].trim_start_matches('/').to_owned();
    }
    let (action, arg) = path.split_once('/').unwrap_or((path.as_str(), ""));
    Ok(match action {
        "echo" => {
            let content_type = req.header("content-type").unwrap_or("application/octet-stream");
            let mut resp = Response::default().with_header("content-type", content_type);
            for value in req.header_all("x-echo") {
                resp = resp.with_header("x-echo", value);
            }
            resp.with_body(req.body.clone())
        }
        "headers" => Response::default()
            .with_header("content-type", "text/plain")
            .with_header("set-cookie", "a=1")
            .with_header("set-cookie", "b=2")
            .with_header("x-multi", "one")
            .with_header("x-multi", "two")
            .with_body("headers"),
        "status" => Response::empty(arg.parse()?)
            .with_header("content-type", "text/plain")
            .with_body(format!("status {arg}")),
        "empty" => Response::empty(200),
        "size" => Response::bytes(vec![b'x'; arg.parse()?]),
        "error" => return Err("conformance failure".into()),
        "panic" => panic!("conformance panic"),
        "json" => Response::json(&json!({ "received": req.json()? })),
        "print" => {
            // Output capture (LF_LOGS): println!/eprintln! are attributed while this is the only call running;
            // req.output always is.
            println!("stdout {arg}");
            eprintln!("stderr {arg}");
            req.output.println(format!("output {arg}"));
            Response::text("printed")
        }
        "sleep" => {
            // Ignores the deadline on purpose (a sync handler cannot be cancelled).
            std::thread::sleep(std::time::Duration::from_millis(arg.parse()?));
            Response::default()
                .with_header("content-type", "text/plain")
                .with_body("slept")
        }
        "flaky" => {
            // 503 the first time (it creates the file X-Flaky names), 200 after: a retried call.
            let marker = req.header("x-flaky").unwrap_or_default();
            let created = std::fs::OpenOptions::new().write(true).create_new(true).open(marker);
            if created.is_ok() {
                Response::empty(503).with_body("failing once")
            } else {
                Response::text("recovered")
            }
        }
        "event" => event(&req), // the call's CloudEvent as the runtime types it (test_cloudevents.py)
        _ => inspect(&req),
    })
}

/// The call's `CloudEvent` as JSON: absent attributes null, the time as Unix microseconds and its offset in
/// seconds (so every runtime's answer compares equal), and the body's size and digest.
fn event(req: &Request) -> Response {
    let event = req.event().map(|ev| {
        json!({
            "specversion": ev.specversion,
            "id": ev.id,
            "source": ev.source,
            "type": ev.ty,
            "subject": ev.subject,
            "time_unix_us": ev.time.map(|t| t.unix_timestamp_nanos().div_euclid(1000)),
            "time_offset_s": ev.time.map(|t| t.offset().whole_seconds()),
            "datacontenttype": ev.datacontenttype,
            "dataschema": ev.dataschema,
            "extensions": ev.extensions,
        })
    });
    Response::json(&json!({
        "event": event,
        "body_size": req.body.len(),
        "body_sha256": format!("{:x}", Sha256::digest(&req.body)),
    }))
}

/// Append a line for this run to the file the `X-Runs-Log` header names.
fn count_run(req: &Request) {
    use std::io::Write as _;
    let Some(name) = req.header("x-runs-log") else {
        return;
    };
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let line = json!({"call": req.call_id, "pid": std::process::id(), "t": t});
    if let Ok(mut file) = std::fs::OpenOptions::new().append(true).create(true).open(name) {
        let _ = file.write_all(format!("{line}\n").as_bytes());
    }
}

fn inspect(req: &Request) -> Response {
    let mut query = serde_json::Map::new();
    for (name, value) in req.query_pairs() {
        let values = query.entry(name).or_insert_with(|| json!([]));
        values.as_array_mut().expect("array").push(json!(value));
    }
    let headers: Vec<_> = req
        .headers
        .iter()
        .map(|(n, v)| json!([n.to_lowercase(), v]))
        .collect();
    let params: Vec<_> = req.params.iter().map(|(n, v)| json!([n, v])).collect();
    Response::json(&json!({
        "method": req.method,
        "path": req.path,
        "query": req.query,
        "query_params": query,
        "headers": headers,
        "params": params,
        "body_size": req.body.len(),
        "body_sha256": format!("{:x}", Sha256::digest(&req.body)),
    }))
}
