//! The envelope codec through its public API: round trips, strict rejection, and no panic on arbitrary bytes.

use _native::envelope::{EnvelopeError, Request, RequestRef, Response, ResponseRef};

/// xorshift64*: deterministic randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        (0..self.below(max + 1))
            .map(|_| self.next().to_le_bytes()[0])
            .collect()
    }

    fn string(&mut self, max: usize) -> String {
        const POOL: &[char] = &[
            'a', 'Z', '0', '/', ' ', '%', '\0', '\n', 'é', 'ß', '日', '😀', '\u{FFFF}',
        ];
        (0..self.below(max + 1))
            .map(|_| POOL[self.below(POOL.len())])
            .collect()
    }

    fn pairs(&mut self) -> Vec<(String, String)> {
        (0..self.below(5))
            .map(|_| (self.string(8), self.string(8)))
            .collect()
    }

    fn request(&mut self) -> Request {
        Request {
            call_id: self.string(30),
            method: self.string(8),
            path: self.string(40),
            query: self.string(20),
            traceparent: self.string(60),
            tracestate: self.string(20),
            headers: self.pairs(),
            params: self.pairs(),
            body: self.bytes(300),
            budget_ms: u32::try_from(self.next() >> 32).unwrap(),
        }
    }

    fn response(&mut self) -> Response {
        Response {
            status: u16::try_from(self.next() >> 48).unwrap(),
            error_kind: self.next().to_le_bytes()[0],
            cold_start: self.next() & 1 == 1,
            duration_ns: self.next(),
            call_id: self.string(30),
            error: self.string(50),
            headers: self.pairs(),
            body: self.bytes(300),
        }
    }
}

fn samples() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let requests = (0..20).map(|_| rng.request().encode().unwrap()).collect();
    let responses = (0..20).map(|_| rng.response().encode().unwrap()).collect();
    (requests, responses)
}

#[test]
fn random_requests_and_responses_round_trip() {
    let mut rng = Rng(42);
    for _ in 0..2_000 {
        let req = rng.request();
        let bytes = req.encode().unwrap();
        assert_eq!(bytes.len(), req.as_ref().encoded_len().unwrap());
        assert_eq!(Request::decode(&bytes).unwrap(), req);
        let resp = rng.response();
        let bytes = resp.encode().unwrap();
        assert_eq!(Response::decode(&bytes).unwrap(), resp);
        assert_eq!(
            ResponseRef::decode(&bytes).unwrap().encode().unwrap(),
            bytes
        );
    }
}

#[test]
fn every_strict_prefix_is_rejected() {
    let (requests, responses) = samples();
    for bytes in &requests {
        for n in 0..bytes.len() {
            assert!(
                RequestRef::decode(&bytes[..n]).is_err(),
                "prefix {n} of {}",
                bytes.len()
            );
        }
    }
    for bytes in &responses {
        for n in 0..bytes.len() {
            assert!(
                ResponseRef::decode(&bytes[..n]).is_err(),
                "prefix {n} of {}",
                bytes.len()
            );
        }
    }
}

#[test]
fn random_byte_flips_never_panic() {
    let (requests, responses) = samples();
    let mut rng = Rng(7);
    for bytes in requests.iter().chain(&responses) {
        for _ in 0..500 {
            let mut b = bytes.clone();
            for _ in 0..=rng.below(4) {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            // Either verdict is fine; a panic fails the test.
            let _ = RequestRef::decode(&b);
            let _ = ResponseRef::decode(&b);
        }
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut rng = Rng(99);
    for _ in 0..20_000 {
        let mut b = rng.bytes(64);
        if b.len() >= 4 && rng.below(2) == 0 {
            b[..4].copy_from_slice(&[b'L', b'F', 1, 1 + u8::try_from(rng.below(2)).unwrap()]);
        }
        let _ = RequestRef::decode(&b);
        let _ = ResponseRef::decode(&b);
    }
}

#[test]
fn rejections_say_why() {
    let good = Request {
        method: "GET".into(),
        path: "/".into(),
        ..Request::default()
    }
    .encode()
    .unwrap();
    let with = |i: usize, v: u8| {
        let mut b = good.clone();
        b[i] = v;
        RequestRef::decode(&b).unwrap_err()
    };
    assert_eq!(with(0, b'X'), EnvelopeError::BadMagic);
    assert_eq!(
        RequestRef::decode(b"XY").unwrap_err(),
        EnvelopeError::BadMagic
    );
    assert_eq!(
        RequestRef::decode(b"").unwrap_err(),
        EnvelopeError::Truncated {
            field: "magic",
            offset: 0
        }
    );
    assert_eq!(
        RequestRef::decode(b"L").unwrap_err(),
        EnvelopeError::Truncated {
            field: "magic",
            offset: 0
        }
    );
    assert_eq!(with(2, 2), EnvelopeError::UnsupportedVersion(2));
    assert_eq!(
        with(3, 2),
        EnvelopeError::WrongKind {
            expected: 1,
            found: 2
        }
    );
    assert_eq!(
        ResponseRef::decode(&good).unwrap_err(),
        EnvelopeError::WrongKind {
            expected: 2,
            found: 1
        }
    );

    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(
        RequestRef::decode(&trailing).unwrap_err(),
        EnvelopeError::TrailingBytes(1)
    );

    // call_id is the first str, at offset 12: claim 1 byte more than there is.
    let mut long = good.clone();
    long[12] = 200;
    assert!(matches!(
        RequestRef::decode(&long).unwrap_err(),
        EnvelopeError::Truncated {
            field: "call_id",
            offset: 12
        }
    ));

    // method "GET" starts at 16 (after the empty call_id): make it invalid UTF-8.
    let mut bad_utf8 = good.clone();
    bad_utf8[20] = 0xFF;
    assert_eq!(
        RequestRef::decode(&bad_utf8).unwrap_err(),
        EnvelopeError::InvalidUtf8 {
            field: "method",
            offset: 16
        }
    );

    for err in [
        EnvelopeError::BadMagic,
        EnvelopeError::TrailingBytes(3),
        EnvelopeError::UnsupportedVersion(9),
    ] {
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn borrowed_decode_points_into_the_input() {
    let bytes = Request {
        path: "/x".into(),
        body: b"body".to_vec(),
        ..Request::default()
    }
    .encode()
    .unwrap();
    let req = RequestRef::decode(&bytes).unwrap();
    let range = bytes.as_ptr_range();
    assert!(range.contains(&req.body.as_ptr()));
    assert!(range.contains(&req.path.as_ptr()));
}
