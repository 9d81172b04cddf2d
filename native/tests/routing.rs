//! The routing table through its public API: precedence, parameters, wildcards, hosts, methods, scale, build errors.

use _native::routing::{
    has_dot_segment, BuildErrorKind, FunctionEntry, LookupError, RouteEntry, RoutingTable,
    RESERVED_SEGMENTS,
};

type Route = (&'static str, &'static str, &'static str, &'static str);
/// `(functions, routes, entry named in the error, why)`.
type BadCase = (
    &'static [(&'static str, &'static str)],
    &'static [Route],
    &'static str,
    BuildErrorKind,
);

fn build(
    functions: &[(&'static str, &'static str)],
    routes: &[Route],
) -> Result<RoutingTable<&'static str>, String> {
    RoutingTable::build(
        functions.iter().map(|&(namespace, name)| FunctionEntry {
            namespace,
            name,
            target: name,
        }),
        routes
            .iter()
            .map(|&(methods, host, pattern, target)| RouteEntry {
                methods,
                host,
                pattern,
                target,
            }),
    )
    .map_err(|e| e.to_string())
}

fn hit(
    t: &RoutingTable<&'static str>,
    method: &str,
    host: &str,
    path: &str,
) -> (&'static str, Vec<(String, String)>) {
    let m = t
        .lookup(method, host, path)
        .unwrap_or_else(|e| panic!("{method} {host}{path}: {e}"));
    (
        *m.target,
        m.params()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect(),
    )
}

fn target(t: &RoutingTable<&'static str>, method: &str, host: &str, path: &str) -> &'static str {
    hit(t, method, host, path).0
}

#[test]
fn functions_match_name_namespace_and_rest() {
    let t = build(&[("default", "hello"), ("team-a", "hello")], &[]).unwrap();
    let cases = [
        ("/function/hello", "hello", ""),
        ("/function/hello/", "hello", "/"),
        ("/function/hello/a/b", "hello", "/a/b"),
        ("/function/hello.default/x", "hello", "/x"),
        ("/function/hello.team-a/x", "hello", "/x"),
    ];
    for (path, want, rest) in cases {
        let m = t.lookup("PATCH", "any.host", path).unwrap();
        assert_eq!(
            (*m.target, m.rest, m.params_len()),
            (want, rest, 0),
            "{path}"
        );
    }
    for path in [
        "/function/",
        "/function",
        "/function/nope",
        "/function/hello.nope",
        "/function/hello.team-a.x",
        "/functions/hello",
    ] {
        assert_eq!(
            t.lookup("GET", "", path).unwrap_err(),
            LookupError::NotFound,
            "{path}"
        );
    }
}

#[test]
fn functions_take_precedence_over_routes() {
    let t = build(
        &[("default", "f")],
        &[("*", "", "/{prefix}/{name}", "route")],
    )
    .unwrap();
    assert_eq!(target(&t, "GET", "", "/function/f"), "f");
    assert_eq!(target(&t, "GET", "", "/functions/g"), "route");
    // Not a function: still the platform's, never a route's.
    assert!(t.lookup("GET", "", "/function/g").is_err());
}

#[test]
fn segments_prefer_literal_then_param_then_catch_all() {
    let t = build(
        &[],
        &[
            ("GET", "", "/users/me", "me"),
            ("GET", "", "/users/{id}", "user"),
            ("GET", "", "/users/{*rest}", "users-rest"),
            ("GET", "", "/users/{id}/posts/{post}", "post"),
        ],
    )
    .unwrap();
    assert_eq!(hit(&t, "GET", "", "/users/me"), ("me", vec![]));
    assert_eq!(
        hit(&t, "GET", "", "/users/7"),
        ("user", vec![("id".into(), "7".into())])
    );
    assert_eq!(
        hit(&t, "GET", "", "/users/7/posts/9"),
        (
            "post",
            vec![("id".into(), "7".into()), ("post".into(), "9".into())]
        )
    );
    assert_eq!(
        hit(&t, "GET", "", "/users/7/other"),
        ("users-rest", vec![("rest".into(), "7/other".into())])
    );
    assert_eq!(
        hit(&t, "GET", "", "/users/"),
        ("users-rest", vec![("rest".into(), String::new())])
    );
    assert_eq!(
        hit(&t, "GET", "", "/users"),
        ("users-rest", vec![("rest".into(), String::new())])
    );
}

#[test]
fn catch_all_at_root_and_trailing_slash_literal() {
    let t = build(
        &[],
        &[
            ("*", "", "/", "root"),
            ("*", "", "/dir/", "dir-slash"),
            ("*", "", "/{*path}", "any"),
        ],
    )
    .unwrap();
    assert_eq!(target(&t, "GET", "", "/"), "root");
    assert_eq!(target(&t, "GET", "", "/dir/"), "dir-slash");
    assert_eq!(
        hit(&t, "GET", "", "/dir"),
        ("any", vec![("path".into(), "dir".into())])
    );
    assert_eq!(
        hit(&t, "GET", "", "/a/b/c"),
        ("any", vec![("path".into(), "a/b/c".into())])
    );
    assert_eq!(
        t.lookup("GET", "", "no-slash").unwrap_err(),
        LookupError::NotFound
    );
}

#[test]
fn hosts_prefer_exact_then_wildcard_then_any() {
    let t = build(
        &[],
        &[
            ("*", "", "/", "any"),
            ("*", "*.example.com", "/", "wild"),
            ("*", "*.eu.example.com", "/", "wild-eu"),
            ("*", "api.example.com", "/", "exact"),
        ],
    )
    .unwrap();
    assert_eq!(target(&t, "GET", "api.example.com", "/"), "exact");
    assert_eq!(target(&t, "GET", "API.Example.COM:8443", "/"), "exact");
    assert_eq!(target(&t, "GET", "api.example.com.", "/"), "exact");
    assert_eq!(target(&t, "GET", "www.example.com", "/"), "wild");
    assert_eq!(target(&t, "GET", "a.b.example.com", "/"), "wild");
    assert_eq!(target(&t, "GET", "x.eu.example.com", "/"), "wild-eu");
    assert_eq!(target(&t, "GET", "example.com", "/"), "any");
    assert_eq!(target(&t, "GET", "notexample.com", "/"), "any");
    assert_eq!(target(&t, "GET", "", "/"), "any");
    assert_eq!(target(&t, "GET", "[::1]:8080", "/"), "any");
}

#[test]
fn a_host_tier_without_the_path_falls_through() {
    let t = build(
        &[],
        &[
            ("*", "api.example.com", "/v1/{x}", "exact"),
            ("*", "", "/health", "any"),
        ],
    )
    .unwrap();
    assert_eq!(target(&t, "GET", "api.example.com", "/health"), "any");
    assert_eq!(
        t.lookup("GET", "other.com", "/v1/a").unwrap_err(),
        LookupError::NotFound
    );
}

#[test]
fn methods_mismatch_reports_every_method_that_would_match() {
    let t = build(
        &[],
        &[
            ("GET,HEAD", "", "/items/{id}", "read"),
            ("put", "", "/items/{id}", "write"),
            ("DELETE", "", "/items/special", "special"),
            ("POST", "api.example.com", "/items/{id}", "exact-post"),
        ],
    )
    .unwrap();
    assert_eq!(target(&t, "GET", "", "/items/1"), "read");
    assert_eq!(target(&t, "get", "", "/items/1"), "read");
    assert_eq!(target(&t, "PUT", "", "/items/1"), "write");
    // Literal `special` only routes DELETE; GET backtracks to the `{id}` route.
    assert_eq!(target(&t, "GET", "", "/items/special"), "read");
    assert_eq!(
        target(&t, "POST", "api.example.com", "/items/1"),
        "exact-post"
    );
    assert_eq!(target(&t, "GET", "api.example.com", "/items/1"), "read");
    let allowed = |m, h, p| match t.lookup(m, h, p) {
        Err(LookupError::MethodNotAllowed(a)) => a,
        other => panic!("expected MethodNotAllowed, got {other:?}"),
    };
    assert_eq!(allowed("POST", "", "/items/1"), ["GET", "HEAD", "PUT"]);
    assert_eq!(
        allowed("PATCH", "", "/items/special"),
        ["DELETE", "GET", "HEAD", "PUT"]
    );
    assert_eq!(
        allowed("PATCH", "api.example.com", "/items/1"),
        ["GET", "HEAD", "POST", "PUT"]
    );
    assert_eq!(
        t.lookup("GET", "", "/other").unwrap_err(),
        LookupError::NotFound
    );
}

#[test]
fn percent_encoded_paths_match_raw() {
    let t = build(
        &[],
        &[
            ("*", "", "/files/{name}", "file"),
            ("*", "", "/caf%C3%A9", "raw"),
        ],
    )
    .unwrap();
    assert_eq!(
        hit(&t, "GET", "", "/files/a%2Fb"),
        ("file", vec![("name".into(), "a%2Fb".into())])
    );
    assert_eq!(target(&t, "GET", "", "/caf%C3%A9"), "raw");
    assert!(t.lookup("GET", "", "/café").is_err());
}

#[test]
fn ten_thousand_routes_all_resolve() {
    let patterns: Vec<String> = (0..10_000)
        .map(|i| format!("/v{}/svc{i}/items/{{id}}", i % 7))
        .collect();
    let t = RoutingTable::build(
        Vec::<FunctionEntry<'_, usize>>::new(),
        patterns.iter().enumerate().map(|(i, p)| RouteEntry {
            methods: "GET",
            host: "",
            pattern: p,
            target: i,
        }),
    )
    .unwrap();
    assert_eq!(t.len(), 10_000);
    for i in (0..10_000).step_by(97) {
        let path = format!("/v{}/svc{i}/items/x{i}", i % 7);
        let m = t.lookup("GET", "h", &path).unwrap();
        assert_eq!(*m.target, i);
        assert_eq!(m.params().next(), Some(("id", format!("x{i}").as_str())));
    }
}

#[test]
fn build_errors_name_the_entry() {
    let cases: &[BadCase] = &[
        (
            &[("Default", "f")],
            &[],
            "function #0",
            BuildErrorKind::InvalidName("namespace"),
        ),
        (
            &[("default", "f.g")],
            &[],
            "function #0",
            BuildErrorKind::InvalidName("name"),
        ),
        (
            &[("default", "f"), ("default", "f")],
            &[],
            "function #1",
            BuildErrorKind::DuplicateFunction,
        ),
        (
            &[],
            &[("GET", "", "users", "x")],
            "route #0",
            BuildErrorKind::InvalidPattern("must start with '/'".into()),
        ),
        (
            &[],
            &[("GET", "", "/a/{*x}/b", "x")],
            "route #0",
            BuildErrorKind::CatchAllNotLast,
        ),
        (
            &[],
            &[("GET", "", "/a/{x}/{x}", "x")],
            "route #0",
            BuildErrorKind::DuplicateParam("x".into()),
        ),
        (
            &[],
            &[("GET", "", "/a", "x"), ("POST,GET", "", "/a", "y")],
            "route #1",
            BuildErrorKind::DuplicateRoute("GET".into()),
        ),
        (
            &[],
            &[("*", "", "/u/{id}", "x"), ("GET", "", "/u/{other}", "y")],
            "route #1",
            BuildErrorKind::DuplicateRoute("GET".into()),
        ),
        (
            &[],
            &[
                ("GET", "", "/x", "x"),
                ("GET", "a.com", "/invocations/{id}", "y"),
            ],
            "route #1",
            BuildErrorKind::ReservedPath("invocations"),
        ),
    ];
    for (functions, routes, entry, kind) in cases {
        let err = RoutingTable::build(
            functions.iter().map(|&(namespace, name)| FunctionEntry {
                namespace,
                name,
                target: (),
            }),
            routes
                .iter()
                .map(|&(methods, host, pattern, _)| RouteEntry {
                    methods,
                    host,
                    pattern,
                    target: (),
                }),
        )
        .unwrap_err();
        assert!(err.entry.starts_with(entry), "{err}");
        assert_eq!(&err.kind, kind, "{err}");
    }
}

#[test]
fn build_rejects_malformed_entries() {
    let bad: &[Route] = &[
        ("", "", "/", "x"),
        ("GET POST", "", "/", "x"),
        ("GET,*", "", "/", "x"),
        ("GET", "*", "/", "x"),
        ("GET", "host:80", "/", "x"),
        ("GET", "*.", "/", "x"),
        ("GET", "a..b", "/", "x"),
        ("GET", "", "/a//b", "x"),
        ("GET", "", "/file.{ext}", "x"),
        ("GET", "", "/{1x}", "x"),
        ("GET", "", "/{}", "x"),
        ("GET", "", "/{*}", "x"),
        (
            "GET",
            "",
            "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}/{j}/{k}/{l}/{m}/{n}/{o}/{p}/{q}",
            "x",
        ),
    ];
    for route in bad {
        let err = build(&[], &[*route]).unwrap_err();
        assert!(err.starts_with("route #0"), "{route:?}: {err}");
    }
    // Same pattern on distinct hosts or methods is fine.
    build(
        &[],
        &[
            ("GET", "", "/a", "x"),
            ("POST", "", "/a", "y"),
            ("GET", "h.com", "/a", "z"),
        ],
    )
    .unwrap();
}

#[test]
fn routes_cannot_claim_the_platforms_paths() {
    for segment in RESERVED_SEGMENTS {
        for pattern in [format!("/{segment}"), format!("/{segment}/{{*rest}}")] {
            let err = RoutingTable::build(
                Vec::<FunctionEntry<'_, ()>>::new(),
                [RouteEntry {
                    methods: "*",
                    host: "any.example.com",
                    pattern: &pattern,
                    target: (),
                }],
            )
            .unwrap_err();
            assert_eq!(err.kind, BuildErrorKind::ReservedPath(segment), "{pattern}");
        }
    }
    // Near misses are ordinary literals.
    build(
        &[],
        &[
            ("*", "", "/functions", "x"),
            ("*", "", "/apis/{x}", "y"),
            ("*", "", "/x/invocations", "z"),
        ],
    )
    .unwrap();
}

#[test]
fn catch_alls_do_not_capture_reserved_paths() {
    let t = build(
        &[("default", "hello")],
        &[
            ("*", "", "/{*rest}", "root"),
            ("*", "", "/{a}/{b}", "two"),
            ("*", "evil.example.com", "/{*rest}", "host"),
        ],
    )
    .unwrap();
    for path in [
        "/function/nope",
        "/function/",
        "/async-function/hello",
        "/invocations/0123",
        "/invocations",
        "/api/v1/x",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        for host in ["", "evil.example.com"] {
            assert_eq!(
                t.lookup("POST", host, path).unwrap_err(),
                LookupError::NotFound,
                "{host}{path}"
            );
        }
    }
    assert_eq!(target(&t, "GET", "", "/function/hello/x"), "hello");
    assert_eq!(target(&t, "GET", "", "/functions/x"), "two");
    assert_eq!(target(&t, "GET", "", "/apis"), "root");
    assert_eq!(target(&t, "GET", "evil.example.com", "/x"), "host");
}

#[test]
fn dot_segments_match_nothing() {
    let t = build(
        &[("default", "hello")],
        &[
            ("*", "", "/files/{*rest}", "files"),
            ("*", "", "/u/{id}/x", "param"),
        ],
    )
    .unwrap();
    for path in [
        "/u/../x",
        "/u/./x",
        "/files/../secret",
        "/files/a/..",
        "/files/./x",
        "/files/.",
        "/function/hello/../x",
        "/function/hello/.",
    ] {
        assert_eq!(
            t.lookup("GET", "", path).unwrap_err(),
            LookupError::NotFound,
            "{path}"
        );
    }
    for path in [
        "/files/.hidden",
        "/files/a..b",
        "/files/...",
        "/files/v1.2/x",
    ] {
        assert_eq!(target(&t, "GET", "", path), "files", "{path}");
    }
    assert_eq!(
        target(&t, "GET", "", "/function/hello.default/a.b"),
        "hello"
    );
    assert!(has_dot_segment(".."));
    assert!(!has_dot_segment("/a.b/c"));
}
