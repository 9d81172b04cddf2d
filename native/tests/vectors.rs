//! Golden vectors: `native/vectors/*.bin` plus `vectors.json`, read by the Rust, Python and Go tests.
//!
//! The checked-in files are the truth. This test fails when encoding the vectors defined below no longer
//! reproduces the `.bin` files and `vectors.json` byte for byte, or when decoding a `.bin` gives other fields.
//! After a deliberate format change, regenerate with `LF_REGENERATE_VECTORS=1 cargo test -p lf-native --test vectors`
//! and review the diff.

use std::fmt::Write as _;
use std::path::PathBuf;

use _native::envelope::{error_kind, Request, Response};

enum Vector {
    Request(&'static str, Request),
    Response(&'static str, Response),
}

impl Vector {
    fn name(&self) -> &'static str {
        match self {
            Self::Request(n, _) | Self::Response(n, _) => n,
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            Self::Request(_, r) => r.encode().unwrap(),
            Self::Response(_, r) => r.encode().unwrap(),
        }
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|&(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

fn vectors() -> Vec<Vector> {
    let mut all = request_vectors();
    all.extend(response_vectors());
    all
}

fn request_vectors() -> Vec<Vector> {
    let get = Request {
        call_id: "01HZX3K4N8Q2W5E7R9T1Y3U5I7".into(),
        method: "GET".into(),
        path: "/".into(),
        budget_ms: 60_000,
        ..Request::default()
    };
    vec![
        Vector::Request("request_empty_body", get.clone()),
        Vector::Request(
            "request_repeated_headers",
            Request {
                path: "/items".into(),
                query: "page=2&sort=name&sort=-date".into(),
                headers: pairs(&[
                    ("Host", "api.example.com"),
                    ("Accept", "text/html"),
                    ("Accept", "application/json"),
                    ("cookie", "a=1"),
                    ("cookie", "b=2"),
                    ("X-Empty", ""),
                ]),
                budget_ms: 59_998,
                ..get.clone()
            },
        ),
        Vector::Request(
            "request_unicode",
            Request {
                method: "PUT".into(),
                path: "/café/日本語/😀".into(),
                query: "q=%C3%A9t%C3%A9".into(),
                headers: pairs(&[
                    ("x-name", "Zoë Ünïcødé"),
                    ("content-type", "text/plain; charset=utf-8"),
                ]),
                body: "grüße, мир, 世界".as_bytes().to_vec(),
                ..get.clone()
            },
        ),
        Vector::Request(
            "request_binary_body",
            Request {
                method: "POST".into(),
                path: "/upload".into(),
                headers: pairs(&[
                    ("content-type", "application/octet-stream"),
                    ("content-length", "256"),
                ]),
                body: (0..=255u8).collect(),
                budget_ms: 1,
                ..get.clone()
            },
        ),
        Vector::Request(
            "request_params_trace",
            Request {
                call_id: "c-0001".into(),
                method: "DELETE".into(),
                path: "/users/42/files/a/b.txt".into(),
                params: pairs(&[("id", "42"), ("rest", "a/b.txt")]),
                traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
                tracestate: "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7".into(),
                budget_ms: u32::MAX,
                ..get.clone()
            },
        ),
    ]
}

fn response_vectors() -> Vec<Vector> {
    vec![
        Vector::Response(
            "response_empty",
            Response {
                status: 204,
                ..Response::default()
            },
        ),
        Vector::Response(
            "response_ok",
            Response {
                status: 200,
                duration_ns: 123_456,
                call_id: "01HZX3K4N8Q2W5E7R9T1Y3U5I7".into(),
                headers: pairs(&[
                    ("content-type", "application/json"),
                    ("set-cookie", "a=1"),
                    ("set-cookie", "b=2"),
                ]),
                body: br#"{"hello":"world"}"#.to_vec(),
                ..Response::default()
            },
        ),
        Vector::Response(
            "response_cold_start_binary",
            Response {
                status: 201,
                cold_start: true,
                duration_ns: u64::MAX,
                call_id: "c-0002".into(),
                headers: pairs(&[("content-type", "image/png"), ("x-ünïcødé", "✓")]),
                body: vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0xFF],
                ..Response::default()
            },
        ),
        Vector::Response(
            "response_handler_error",
            Response {
                status: 500,
                error_kind: error_kind::HANDLER,
                duration_ns: 1_500_000,
                call_id: "c-0003".into(),
                error: "ZeroDivisionError: division by zero".into(),
                ..Response::default()
            },
        ),
        Vector::Response(
            "response_timeout",
            Response {
                status: 504,
                error_kind: error_kind::TIMEOUT,
                cold_start: true,
                duration_ns: 59_950_000_000,
                call_id: "c-0004".into(),
                error: "handler overran its budget of 60000 ms".into(),
                ..Response::default()
            },
        ),
        Vector::Response(
            "response_busy",
            Response {
                status: 503,
                error_kind: error_kind::BUSY,
                call_id: "c-0005".into(),
                error: "replica at its concurrency limit".into(),
                ..Response::default()
            },
        ),
    ]
}

// ---------------------------------------------------------------------------------------------------------------
// A tiny, deterministic JSON writer (the crate has no dependencies, and the output is compared byte for byte).

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => write!(out, "\\u{:04x}", u32::from(c)).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_pairs(pairs: &[(String, String)]) -> String {
    let items: Vec<String> = pairs
        .iter()
        .map(|(n, v)| format!("[{}, {}]", json_str(n), json_str(v)))
        .collect();
    format!("[{}]", items.join(", "))
}

fn json_fields(v: &Vector) -> Vec<(&'static str, String)> {
    match v {
        Vector::Request(_, r) => vec![
            ("call_id", json_str(&r.call_id)),
            ("method", json_str(&r.method)),
            ("path", json_str(&r.path)),
            ("query", json_str(&r.query)),
            ("headers", json_pairs(&r.headers)),
            ("params", json_pairs(&r.params)),
            ("body_b64", json_str(&base64(&r.body))),
            ("budget_ms", r.budget_ms.to_string()),
            ("traceparent", json_str(&r.traceparent)),
            ("tracestate", json_str(&r.tracestate)),
        ],
        Vector::Response(_, r) => vec![
            ("status", r.status.to_string()),
            ("error_kind", r.error_kind.to_string()),
            ("cold_start", r.cold_start.to_string()),
            ("duration_ns", r.duration_ns.to_string()),
            ("call_id", json_str(&r.call_id)),
            ("error", json_str(&r.error)),
            ("headers", json_pairs(&r.headers)),
            ("body_b64", json_str(&base64(&r.body))),
        ],
    }
}

fn render_json(vectors: &[Vector]) -> String {
    let mut out = String::new();
    out.push_str(
        "{\n  \"format\": \"LiteFunctions call envelope, version 1 (docs/protocol.md)\",\n",
    );
    out.push_str("  \"note\": \"Each .bin is the encoding of its fields; bodies are base64. Generated by native/tests/vectors.rs.\",\n");
    out.push_str("  \"vectors\": [\n");
    for (i, v) in vectors.iter().enumerate() {
        let kind = if matches!(v, Vector::Request(..)) {
            "request"
        } else {
            "response"
        };
        writeln!(out, "    {{").unwrap();
        writeln!(out, "      \"name\": {},", json_str(v.name())).unwrap();
        writeln!(out, "      \"kind\": \"{kind}\",").unwrap();
        writeln!(out, "      \"file\": \"{}.bin\",", v.name()).unwrap();
        writeln!(out, "      \"fields\": {{").unwrap();
        let fields = json_fields(v);
        for (j, (k, val)) in fields.iter().enumerate() {
            let comma = if j + 1 < fields.len() { "," } else { "" };
            writeln!(out, "        \"{k}\": {val}{comma}").unwrap();
        }
        writeln!(out, "      }}").unwrap();
        writeln!(
            out,
            "    }}{}",
            if i + 1 < vectors.len() { "," } else { "" }
        )
        .unwrap();
    }
    out.push_str("  ]\n}\n");
    out
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

#[test]
fn vectors_match_the_checked_in_files() {
    let vectors = vectors();
    let json = render_json(&vectors);
    if std::env::var_os("LF_REGENERATE_VECTORS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(dir()).unwrap();
        for v in &vectors {
            std::fs::write(dir().join(format!("{}.bin", v.name())), v.encode()).unwrap();
        }
        std::fs::write(dir().join("vectors.json"), &json).unwrap();
    }
    for v in &vectors {
        let path = dir().join(format!("{}.bin", v.name()));
        let golden = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            v.encode(),
            golden,
            "{}: encoding differs from the golden bytes",
            v.name()
        );
        match v {
            Vector::Request(_, r) => {
                assert_eq!(&Request::decode(&golden).unwrap(), r, "{}", v.name());
            }
            Vector::Response(_, r) => {
                assert_eq!(&Response::decode(&golden).unwrap(), r, "{}", v.name());
            }
        }
    }
    let golden_json = std::fs::read_to_string(dir().join("vectors.json")).unwrap();
    assert_eq!(
        json, golden_json,
        "vectors.json differs from the vectors defined here"
    );
}

#[test]
fn base64_matches_rfc4648_examples() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
}
