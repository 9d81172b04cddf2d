//! The NATS protocol codec through its public API: every split of a stream parses the same, pipelined ops,
//! headers and status lines, limits, garbage, and builders.

use _native::natsproto::{
    encode_connect, encode_sub, encode_unsub, parse_headers, Parser, ProtoError, Pub, ServerOp,
    DEFAULT_MAX_CONTROL_LINE, DEFAULT_MAX_PAYLOAD, PING, PONG,
};

/// An owned copy of an op, so results of different feeds compare.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Info(String),
    Msg {
        subject: String,
        sid: u64,
        reply: Option<String>,
        headers: Option<Vec<u8>>,
        status: u16,
        payload: Vec<u8>,
    },
    Ping,
    Pong,
    Ok,
    Err(String),
}

fn own(op: ServerOp<'_>) -> Owned {
    match op {
        ServerOp::Info(j) => Owned::Info(j.to_owned()),
        ServerOp::Msg(m) => Owned::Msg {
            subject: m.subject.to_owned(),
            sid: m.sid,
            reply: m.reply.map(str::to_owned),
            headers: m.headers.map(<[u8]>::to_vec),
            status: m.status,
            payload: m.payload.to_vec(),
        },
        ServerOp::Ping => Owned::Ping,
        ServerOp::Pong => Owned::Pong,
        ServerOp::Ok => Owned::Ok,
        ServerOp::Err(e) => Owned::Err(e.to_owned()),
    }
}

fn feed_chunks(chunks: &[&[u8]]) -> Result<(Vec<Owned>, Parser), ProtoError> {
    let mut parser = Parser::default();
    let mut out = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, |op| {
            out.push(own(op));
            Ok::<(), ProtoError>(())
        })?;
    }
    Ok((out, parser))
}

fn parse(data: &[u8]) -> Result<Vec<Owned>, ProtoError> {
    feed_chunks(&[data]).map(|(ops, _)| ops)
}

const STREAM: &[u8] = b"INFO {\"server_id\":\"x\",\"max_payload\":8388608,\"headers\":true}\r\n\
+OK\r\n\
PING\r\n\
MSG _INBOX.ab.1 1 5\r\nhello\r\n\
MSG lf.x 22 reply.to 0\r\n\r\n\
HMSG _INBOX.ab.2 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n\
HMSG a.b 3 r 24 27\r\nNATS/1.0\r\nK: v\r\nK: w\r\n\r\nabc\r\n\
msg lower 4 2\r\n\r\n\r\n\
PONG\r\n\
-ERR 'Stale Connection'\r\n";

fn expected() -> Vec<Owned> {
    let msg = |subject: &str,
               sid,
               reply: Option<&str>,
               headers: Option<&[u8]>,
               status,
               payload: &[u8]| {
        Owned::Msg {
            subject: subject.into(),
            sid,
            reply: reply.map(Into::into),
            headers: headers.map(<[u8]>::to_vec),
            status,
            payload: payload.to_vec(),
        }
    };
    vec![
        Owned::Info("{\"server_id\":\"x\",\"max_payload\":8388608,\"headers\":true}".into()),
        Owned::Ok,
        Owned::Ping,
        msg("_INBOX.ab.1", 1, None, None, 0, b"hello"),
        msg("lf.x", 22, Some("reply.to"), None, 0, b""),
        msg(
            "_INBOX.ab.2",
            1,
            None,
            Some(b"NATS/1.0 503\r\n\r\n"),
            503,
            b"",
        ),
        msg(
            "a.b",
            3,
            Some("r"),
            Some(b"NATS/1.0\r\nK: v\r\nK: w\r\n\r\n"),
            0,
            b"abc",
        ),
        msg("lower", 4, None, None, 0, b"\r\n"),
        Owned::Pong,
        Owned::Err("Stale Connection".into()),
    ]
}

#[test]
fn pipelined_ops_in_one_chunk() {
    assert_eq!(parse(STREAM).unwrap(), expected());
}

#[test]
fn every_split_point_parses_the_same() {
    for at in 0..=STREAM.len() {
        let (ops, parser) = feed_chunks(&[&STREAM[..at], &STREAM[at..]]).unwrap();
        assert_eq!(ops, expected(), "split at {at}");
        assert_eq!(parser.buffered(), 0);
    }
}

#[test]
fn every_pair_of_split_points_parses_the_same() {
    for a in (0..=STREAM.len()).step_by(3) {
        for b in a..=STREAM.len() {
            let (ops, _) = feed_chunks(&[&STREAM[..a], &STREAM[a..b], &STREAM[b..]]).unwrap();
            assert_eq!(ops, expected(), "split at {a} and {b}");
        }
    }
}

#[test]
fn byte_at_a_time() {
    let chunks: Vec<&[u8]> = STREAM.chunks(1).collect();
    assert_eq!(feed_chunks(&chunks).unwrap().0, expected());
}

#[test]
fn header_block_is_parsed_on_demand() {
    let h = parse_headers(
        b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\nX:  y \r\n\r\n",
    )
    .unwrap();
    assert_eq!(h.status, 408);
    assert_eq!(h.description, "Request Timeout");
    assert_eq!(h.pairs, vec![("Nats-Pending-Messages", "1"), ("X", "y")]);
    let h = parse_headers(b"NATS/1.0\r\nA: b\r\n\r\n").unwrap();
    assert_eq!((h.status, h.description), (0, ""));
    assert_eq!(
        parse_headers(b"NATS/1.0\r\nno colon\r\n\r\n"),
        Err(ProtoError::BadHeaders)
    );
    assert_eq!(
        parse_headers(b"HTTP/1.0\r\n\r\n"),
        Err(ProtoError::BadHeaders)
    );
}

#[test]
fn garbage_is_refused() {
    let cases: &[(&[u8], ProtoError)] = &[
        (
            b"HELLO world\r\n",
            ProtoError::UnknownOp("HELLO world".into()),
        ),
        (b"MSG a\r\n", ProtoError::BadArgs { op: "MSG" }),
        (b"MSG a 1 2 3 4 5\r\n", ProtoError::BadArgs { op: "MSG" }),
        (b"MSG a x 2\r\n", ProtoError::BadArgs { op: "MSG" }),
        (b"MSG a 1 -2\r\n", ProtoError::BadArgs { op: "MSG" }),
        (
            b"MSG a 1 99999999999999999999\r\n",
            ProtoError::BadArgs { op: "MSG" },
        ),
        (b"MSG a 1 2\r\nabXY", ProtoError::MissingTrailer),
        (b"HMSG a 1 20 10\r\n", ProtoError::BadArgs { op: "HMSG" }),
        (b"HMSG a 1 2 10\r\n", ProtoError::BadArgs { op: "HMSG" }),
        (
            b"HMSG a 1 12 12\r\nHTTP/1.1 200\r\n",
            ProtoError::BadHeaders,
        ),
        (
            b"MSG \xff 1 0\r\n\r\n",
            ProtoError::InvalidUtf8 { op: "MSG" },
        ),
        (
            b"MSG a 1 1048577\r\n",
            ProtoError::PayloadTooLarge {
                size: DEFAULT_MAX_PAYLOAD + 1,
                limit: DEFAULT_MAX_PAYLOAD,
            },
        ),
    ];
    for (data, err) in cases {
        assert_eq!(
            parse(data).as_ref(),
            Err(err),
            "{:?}",
            String::from_utf8_lossy(data)
        );
    }
}

#[test]
fn a_line_without_end_fails_at_the_limit_not_later() {
    let mut parser = Parser::default();
    let noise = vec![b'x'; DEFAULT_MAX_CONTROL_LINE];
    let mut sink = |_: ServerOp<'_>| Ok::<(), ProtoError>(());
    parser.feed(b"MSG ", &mut sink).unwrap();
    let err = parser.feed(&noise, &mut sink).unwrap_err();
    assert_eq!(
        err,
        ProtoError::LineTooLong {
            limit: DEFAULT_MAX_CONTROL_LINE
        }
    );
    // INFO may be longer (cluster URLs), up to its own limit.
    let long_info = format!("INFO {{\"x\":\"{}\"}}\r\n", "y".repeat(10_000));
    assert_eq!(parse(long_info.as_bytes()).unwrap().len(), 1);
}

#[test]
fn payload_limit_follows_info() {
    let mut data = b"INFO {\"max_payload\":4}\r\nMSG a 1 4\r\nabcd\r\n".to_vec();
    assert_eq!(parse(&data).unwrap().len(), 2);
    data.extend_from_slice(b"MSG a 1 5\r\nabcde\r\n");
    assert_eq!(
        parse(&data),
        Err(ProtoError::PayloadTooLarge { size: 5, limit: 4 })
    );
}

#[test]
fn callback_error_stops_parsing() {
    let mut parser = Parser::default();
    let mut seen = 0;
    let result = parser.feed(b"PING\r\nPONG\r\n", |_| {
        seen += 1;
        Err(ProtoError::BadHeaders)
    });
    assert_eq!(result, Err(ProtoError::BadHeaders));
    assert_eq!(seen, 1);
}

#[test]
fn builders() {
    assert_eq!(
        Pub::new("a.b", b"hi").encode().unwrap(),
        b"PUB a.b 2\r\nhi\r\n"
    );
    let p = Pub {
        reply: "r.1",
        ..Pub::new("a", b"")
    };
    assert_eq!(p.encode().unwrap(), b"PUB a r.1 0\r\n\r\n");
    let headers = [("K", "v")];
    let p = Pub {
        reply: "_INBOX.x.",
        reply_token: Some(9),
        headers: Some(&headers),
        ..Pub::new("a", b"xyz")
    };
    assert_eq!(
        p.encode().unwrap(),
        b"HPUB a _INBOX.x.9 18 21\r\nNATS/1.0\r\nK: v\r\n\r\nxyz\r\n"
    );
    assert_eq!(
        encode_sub("_INBOX.x.*", None, 1).unwrap(),
        b"SUB _INBOX.x.* 1\r\n"
    );
    assert_eq!(encode_sub("f", Some("q"), 7).unwrap(), b"SUB f q 7\r\n");
    assert_eq!(encode_unsub(3, None), b"UNSUB 3\r\n");
    assert_eq!(encode_unsub(3, Some(1)), b"UNSUB 3 1\r\n");
    assert_eq!(
        encode_connect("{\"verbose\":false}").unwrap(),
        b"CONNECT {\"verbose\":false}\r\n"
    );
    assert_eq!((PING, PONG), (&b"PING\r\n"[..], &b"PONG\r\n"[..]));
}

#[test]
fn builders_refuse_injection() {
    let bad = |field| Err(ProtoError::BadToken { field });
    assert_eq!(Pub::new("a b", b"").encode(), bad("subject"));
    assert_eq!(Pub::new("a\r\nPUB x 0", b"").encode(), bad("subject"));
    assert_eq!(Pub::new("", b"").encode(), bad("subject"));
    let p = Pub {
        reply: "r\n",
        ..Pub::new("a", b"")
    };
    assert_eq!(p.encode(), bad("reply"));
    let headers = [("K", "v\r\nX: y")];
    let p = Pub {
        headers: Some(&headers),
        ..Pub::new("a", b"")
    };
    assert_eq!(p.encode(), bad("header value"));
    let headers = [("K:", "v")];
    let p = Pub {
        headers: Some(&headers),
        ..Pub::new("a", b"")
    };
    assert_eq!(p.encode(), bad("header name"));
    assert_eq!(encode_sub("a", Some("q q"), 1), bad("queue group"));
    assert_eq!(encode_connect("{\n}"), bad("CONNECT options"));
}

#[test]
fn what_the_builders_write_the_parser_reads_back() {
    // A server relays PUB as MSG with the same subject, reply and payload: check the sizes line up.
    for size in [0usize, 1, 2, 100, 70_000] {
        let payload: Vec<u8> = (0..size).map(|i| u8::try_from(i % 251).unwrap()).collect();
        let headers = [("A", "1")];
        let p = Pub {
            reply: "_INBOX.z.",
            reply_token: Some(u128::MAX),
            headers: Some(&headers),
            ..Pub::new("s", &payload)
        };
        let wire = p.encode().unwrap();
        let relayed = [b"HMSG s 1 ".as_slice(), &wire[b"HPUB s ".len()..]].concat();
        let ops = parse(&relayed).unwrap();
        let Owned::Msg {
            reply,
            payload: got,
            headers,
            ..
        } = &ops[0]
        else {
            panic!("{ops:?}")
        };
        assert_eq!(
            reply.as_deref(),
            Some(format!("_INBOX.z.{}", u128::MAX).as_str())
        );
        assert_eq!(got, &payload);
        assert_eq!(headers.as_deref(), Some(&b"NATS/1.0\r\nA: 1\r\n\r\n"[..]));
    }
}
