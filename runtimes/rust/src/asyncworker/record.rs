//! The call's record (`LF_RESULTS[{call id}]`), `lf_core.asynccalls.streams.CallRecord`: its JSON is byte for
//! byte what the Python runtime writes (msgspec, fields in declaration order, defaults omitted), since
//! `GET /invocations/{id}` and `lf dlq` read both; and its view, what `GET /invocations/{id}` and callbacks send.

use std::fmt::Write as _;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// `lf_core.asynccalls.streams.CallResult`: always written in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallResult {
    pub status: u16,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default, with = "base64_bytes")]
    pub body: Vec<u8>,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero_f(value: &f64) -> bool {
    *value == 0.0
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero_u(value: &u32) -> bool {
    *value == 0
}

/// `lf_core.asynccalls.streams.CallRecord` (`LF_RESULTS[{call id}]`): msgspec's encoding, fields in order, those
/// equal to their default left out.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CallRecord {
    pub call_id: String,
    pub namespace: String,
    pub function: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "is_zero_u")]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "is_zero_f")]
    pub submitted_at: f64,
    #[serde(default, skip_serializing_if = "is_zero_f")]
    pub updated_at: f64,
    #[serde(default, skip_serializing_if = "is_zero_f")]
    pub next_attempt_at: f64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_error: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub worker: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<CallResult>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub callback: String,
    #[serde(default, skip_serializing_if = "is_zero_u")]
    pub redrives: u32,
}

impl CallRecord {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(super) fn terminal(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "dead" | "cancelled")
    }
}

mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// What `GET /invocations/{id}` answers (`lf_core.asynccalls.streams.record_view`), encoded as the ingestor
/// encodes it: `json.dumps(view, separators=(",", ":"))`, so non-ASCII is escaped.
pub fn record_view(record: &CallRecord) -> Vec<u8> {
    let mut out = String::with_capacity(256);
    out.push_str("{\"callId\":");
    string(&mut out, &record.call_id);
    out.push_str(",\"function\":");
    string(&mut out, &record.function);
    out.push_str(",\"namespace\":");
    string(&mut out, &record.namespace);
    out.push_str(",\"status\":");
    string(&mut out, &record.status);
    let _ = write!(
        out,
        ",\"attempts\":{},\"submittedAt\":{},\"updatedAt\":{}",
        record.attempts,
        float(record.submitted_at),
        float(record.updated_at)
    );
    if !record.last_error.is_empty() {
        out.push_str(",\"lastError\":");
        string(&mut out, &record.last_error);
    }
    if record.next_attempt_at != 0.0 && record.status == "failed" {
        let _ = write!(out, ",\"nextAttemptAt\":{}", float(record.next_attempt_at));
    }
    if !record.callback.is_empty() {
        out.push_str(",\"callback\":");
        string(&mut out, &record.callback);
    }
    if let Some(result) = &record.result {
        let _ = write!(
            out,
            ",\"result\":{{\"status\":{},\"headers\":[",
            result.status
        );
        for (i, (name, value)) in result.headers.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('[');
            string(&mut out, name);
            out.push(',');
            string(&mut out, value);
            out.push(']');
        }
        out.push(']');
        if let Ok(text) = std::str::from_utf8(&result.body) {
            out.push_str(",\"body\":");
            string(&mut out, text);
        } else {
            out.push_str(",\"bodyBase64\":\"");
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(&result.body));
            out.push('"');
        }
        out.push('}');
    }
    out.push('}');
    out.into_bytes()
}

/// A float as Python's `repr` writes one: the shortest round trip (`1.0`, `1e+16`), as `serde_json` does.
fn float(value: f64) -> String {
    serde_json::to_string(&value).unwrap_or_else(|_| "0.0".to_owned())
}

/// A JSON string as Python's `json.dumps` writes one (`ensure_ascii`).
fn string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            '\u{7f}' => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn record_json_is_msgspecs() {
        let mut record = CallRecord {
            call_id: "abc".into(),
            namespace: "default".into(),
            function: "f".into(),
            status: "running".into(),
            attempts: 1,
            submitted_at: 1_764_382_284.5,
            updated_at: 1_764_382_285.0,
            worker: "h:1".into(),
            ..CallRecord::default()
        };
        assert_eq!(
            String::from_utf8(record.encode()).unwrap(),
            r#"{"call_id":"abc","namespace":"default","function":"f","status":"running","attempts":1,"submitted_at":1764382284.5,"updated_at":1764382285.0,"worker":"h:1"}"#
        );
        record.status = "succeeded".into();
        record.result = Some(CallResult {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: b"hi".to_vec(),
        });
        record.callback = "pending".into();
        record.redrives = 2;
        let text = String::from_utf8(record.encode()).unwrap();
        assert!(text.ends_with(r#""worker":"h:1","result":{"status":200,"headers":[["content-type","text/plain"]],"body":"aGk="},"callback":"pending","redrives":2}"#), "{text}");
        let back: CallRecord = serde_json::from_slice(text.as_bytes()).unwrap();
        assert_eq!(back, record);
        let queued: CallRecord = serde_json::from_str(
            r#"{"call_id":"x","namespace":"n","function":"f","status":"queued"}"#,
        )
        .unwrap();
        assert_eq!((queued.attempts, queued.result), (0, None));
    }

    #[test]
    fn timestamps_survive_a_read_and_write_back() {
        // The callback stores its outcome into the record it read: every float must come back the same.
        let base = 1_764_382_284_000_000_000_u64;
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..50_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = Duration::from_nanos(base + state % 10_000_000_000_000).as_secs_f64();
            let record = CallRecord {
                updated_at: at,
                ..CallRecord::default()
            };
            let text = record.encode();
            let back: CallRecord = serde_json::from_slice(&text).unwrap();
            assert_eq!(back.encode(), text);
        }
    }

    #[test]
    fn view_is_json_dumps() {
        let record = CallRecord {
            call_id: "c1".into(),
            namespace: "default".into(),
            function: "f".into(),
            status: "succeeded".into(),
            attempts: 1,
            submitted_at: 1_764_382_284.25,
            updated_at: 1_764_382_285.0,
            callback: "pending".into(),
            result: Some(CallResult {
                status: 200,
                headers: vec![("x".into(), "é\n".into())],
                body: b"hi \"there\"".to_vec(),
            }),
            ..CallRecord::default()
        };
        assert_eq!(
            String::from_utf8(record_view(&record)).unwrap(),
            r#"{"callId":"c1","function":"f","namespace":"default","status":"succeeded","attempts":1,"submittedAt":1764382284.25,"updatedAt":1764382285.0,"callback":"pending","result":{"status":200,"headers":[["x","\u00e9\n"]],"body":"hi \"there\""}}"#
        );
        let binary = CallRecord {
            result: Some(CallResult {
                status: 500,
                headers: Vec::new(),
                body: vec![0xff, 0x00],
            }),
            status: "failed".into(),
            next_attempt_at: 2.5,
            last_error: "status 500".into(),
            ..CallRecord::default()
        };
        let text = String::from_utf8(record_view(&binary)).unwrap();
        assert!(text.ends_with(r#""lastError":"status 500","nextAttemptAt":2.5,"result":{"status":500,"headers":[],"bodyBase64":"/wA="}}"#), "{text}");
        assert_eq!(float(1e16), "1e+16");
        let mut emoji = String::new();
        string(&mut emoji, "😀\u{1}");
        assert_eq!(emoji, r#""\ud83d\ude00\u0001""#);
    }
}
