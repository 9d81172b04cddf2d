//! Ad-hoc timing of the pure-Rust lookup and codec: `cargo run --release -p lf-native --example lookup_speed`.
use std::hint::black_box;
use std::time::Instant;

use _native::envelope::RequestRef;
use _native::routing::{FunctionEntry, RouteEntry, RoutingTable};

fn time(label: &str, n: u32, mut f: impl FnMut()) {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    println!(
        "{label}: {:.0} ns",
        start.elapsed().as_secs_f64() * 1e9 / f64::from(n)
    );
}

fn main() {
    for k in [10usize, 10_000] {
        let patterns: Vec<String> = (0..k)
            .map(|i| format!("/v{}/svc{i}/items/{{id}}", i % 7))
            .collect();
        let names: Vec<String> = (0..10).map(|i| format!("fn{i}")).collect();
        let table = RoutingTable::build(
            names.iter().enumerate().map(|(i, n)| FunctionEntry {
                namespace: "default",
                name: n,
                target: i,
            }),
            patterns.iter().enumerate().map(|(i, p)| RouteEntry {
                methods: "GET,POST",
                host: "",
                pattern: p,
                target: i,
            }),
        )
        .unwrap();
        let i = k - 4;
        let path = format!("/v{}/svc{i}/items/42", i % 7);
        time(&format!("{k} routes, route lookup"), 1_000_000, || {
            black_box(
                table
                    .lookup(
                        black_box("GET"),
                        black_box("example.com:8080"),
                        black_box(&path),
                    )
                    .unwrap(),
            );
        });
        time(&format!("{k} routes, function lookup"), 1_000_000, || {
            black_box(
                table
                    .lookup(
                        black_box("GET"),
                        black_box("example.com"),
                        black_box("/function/fn3/x"),
                    )
                    .unwrap(),
            );
        });
    }
    let body = vec![b'x'; 1024];
    let req = RequestRef {
        call_id: "01J0000000000000000000000",
        method: "POST",
        path: "/a/b",
        query: "x=1",
        headers: vec![
            ("host", "example.com"),
            ("user-agent", "curl/8"),
            ("accept", "*/*"),
        ],
        body: &body,
        budget_ms: 60_000,
        ..RequestRef::default()
    };
    time("encode+decode 1 KiB request", 1_000_000, || {
        let bytes = black_box(&req).encode().unwrap();
        black_box(RequestRef::decode(&bytes).unwrap());
    });
}
