//! The HTTP routing table: built once from plain entries, then looked up per request without allocating.
//!
//! Two kinds of entries:
//! - functions `(namespace, name)`, served at `/function/{name}[.{namespace}][/{rest}]` for any method and host
//!   (`{namespace}` defaults to `default`; the segment is split at its first `.`). They are kept in a map keyed by
//!   namespace then name, looked up with borrowed `&str`s.
//! - routes `(methods, host, pattern)`: `methods` is `*` or a comma-separated list (`GET,POST`); `host` is `""`
//!   (any host), an exact host or a suffix wildcard `*.example.com` (which matches `a.example.com` and
//!   `a.b.example.com`, not `example.com`); `pattern` is `/`-separated segments, each a literal, `{param}` (one
//!   non-empty segment) or, as the last segment, `{*param}` (the rest of the path, possibly empty).
//!
//! Precedence: function entries first; then exact host over wildcard host (longest suffix first) over any host;
//! then, segment by segment, literal over `{param}` over `{*param}`, backtracking when a branch does not lead to a
//! route that accepts the method. When no route accepts the method but some route matches the path, the lookup
//! fails with the sorted list of the methods that would have matched (HTTP 405 `Allow`).
//!
//! Reserved paths: a path whose first segment is one of [`RESERVED_SEGMENTS`] (`/function/...`,
//! `/async-function/...`, `/invocations/...`, `/api/...`, `/healthz`, `/readyz`, `/metrics`) belongs to the platform.
//! A route pattern whose first segment is such a literal is refused at build, and a lookup of a reserved path
//! tries the function entries only, never a route: a `/{*rest}` or `/{x}/{id}` route cannot capture them.
//!
//! Limits, on purpose:
//! - Paths are matched as given: `%2F` is not a separator and `%41` is not `A`. The ingestor gives the path as its
//!   HTTP server (granian) already percent-decoded it, since RSGI exposes no raw path: there `/a%2Fb` arrives, and
//!   is routed, as `/a/b` (docs/operations.md, "Security model").
//! - A path with a dot segment (`.` or `..`; from the ingestor also `%2e%2e`, decoded) matches nothing
//!   ([`has_dot_segment`]): a route's `{*rest}` or a function's rest never carries one to a function, which might
//!   resolve it against a file tree (the ingestor answers such a path 400).
//! - Hosts compare case-insensitively after dropping a `:port` and one trailing `.`. Methods compare
//!   case-insensitively (ASCII) and are reported upper-case.
//! - A pattern holds at most [`MAX_PARAMS`] parameters, so a lookup keeps them on the stack.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// Most parameters (`{x}` and `{*x}`) one pattern may hold.
pub const MAX_PARAMS: usize = 16;

/// First path segments that belong to the platform: its own endpoints, now or reserved for later (`api`).
pub const RESERVED_SEGMENTS: [&str; 7] = [
    "function",
    "async-function",
    "invocations",
    "api",
    "healthz",
    "readyz",
    "metrics",
];

const FUNCTION_PREFIX: &str = "/function/";
const DEFAULT_NAMESPACE: &str = "default";
/// Longest host (DNS limit is 253) normalised on the stack; longer hosts only match any-host routes.
const MAX_HOST: usize = 255;

/// `FxHash`: keys are the operator's route literals, so a keyed (DoS-resistant) hash buys nothing here, and
/// `SipHash` costs about 2× per segment.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let v = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
    fn write_u8(&mut self, b: u8) {
        self.write(&[b]);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A function entry: `(namespace, name, target)`.
#[derive(Debug, Clone)]
pub struct FunctionEntry<'a, T> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub target: T,
}

/// A route entry: `(methods, host, pattern, target)`.
#[derive(Debug, Clone)]
pub struct RouteEntry<'a, T> {
    pub methods: &'a str,
    pub host: &'a str,
    pub pattern: &'a str,
    pub target: T,
}

/// Why an entry was refused. [`BuildError`] adds which entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildErrorKind {
    InvalidName(&'static str),
    DuplicateFunction,
    InvalidMethods(String),
    InvalidHost(&'static str),
    InvalidPattern(String),
    CatchAllNotLast,
    DuplicateParam(String),
    TooManyParams,
    DuplicateRoute(String),
    ReservedPath(&'static str),
}

impl fmt::Display for BuildErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidName(which) => {
                write!(
                    f,
                    "invalid {which}: not a DNS-1123 label (a-z, 0-9, '-', at most 63 characters)"
                )
            }
            Self::DuplicateFunction => f.write_str("duplicate function"),
            Self::InvalidMethods(why) => write!(f, "invalid methods: {why}"),
            Self::InvalidHost(why) => write!(f, "invalid host: {why}"),
            Self::InvalidPattern(why) => write!(f, "invalid pattern: {why}"),
            Self::CatchAllNotLast => {
                f.write_str("invalid pattern: a catch-all `{*...}` must be the last segment")
            }
            Self::DuplicateParam(name) => {
                write!(f, "invalid pattern: parameter {name:?} appears twice")
            }
            Self::TooManyParams => write!(f, "invalid pattern: more than {MAX_PARAMS} parameters"),
            Self::ReservedPath(segment) => write!(
                f,
                "reserved path: /{segment} belongs to the platform (reserved first segments: {})",
                RESERVED_SEGMENTS.join(", ")
            ),
            Self::DuplicateRoute(method) => {
                write!(
                    f,
                    "duplicate route: method {method} is already routed for this host and path"
                )
            }
        }
    }
}

/// A refused entry: `entry` names it (kind, index and values), `kind` says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    pub entry: String,
    pub kind: BuildErrorKind,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.entry, self.kind)
    }
}

impl std::error::Error for BuildError {}

/// A failed lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// No function or route matches the host and path.
    NotFound,
    /// Routes match the host and path, but none accepts the method; these methods would (sorted, upper-case).
    MethodNotAllowed(Vec<String>),
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str("no route matches"),
            Self::MethodNotAllowed(allowed) => {
                write!(f, "method not allowed (allowed: {})", allowed.join(", "))
            }
        }
    }
}

impl std::error::Error for LookupError {}

/// A successful lookup. Borrows the table (`'t`) and the request path (`'p`).
#[derive(Debug, Clone)]
pub struct Match<'t, 'p, T> {
    pub target: &'t T,
    /// For a function: the path after `/function/{name}[.{namespace}]` (`""` or starting with `/`).
    /// For a route: the full path.
    pub rest: &'p str,
    names: &'t [Box<str>],
    values: [&'p str; MAX_PARAMS],
}

impl<'t, 'p, T> Match<'t, 'p, T> {
    /// Number of route parameters (0 for a function entry).
    pub fn params_len(&self) -> usize {
        self.names.len()
    }

    /// The route parameters `(name, value)` in pattern order; empty for a function entry.
    pub fn params(&self) -> impl ExactSizeIterator<Item = (&'t str, &'p str)> + '_ {
        self.names
            .iter()
            .zip(self.values.iter())
            .map(|(n, v)| (&**n, *v))
    }
}

#[derive(Debug)]
enum Methods {
    Any,
    /// Upper-case, deduplicated.
    List(Box<[Box<str>]>),
}

impl Methods {
    fn accepts(&self, method: &str) -> bool {
        match self {
            Self::Any => true,
            Self::List(list) => list.iter().any(|m| m.eq_ignore_ascii_case(method)),
        }
    }

    fn overlap(&self, other: &Self) -> Option<String> {
        match (self, other) {
            (Self::Any, Self::Any) => Some("*".to_owned()),
            (Self::Any, Self::List(l)) | (Self::List(l), Self::Any) => Some(l[0].to_string()),
            (Self::List(a), Self::List(b)) => {
                a.iter().find(|m| b.contains(m)).map(ToString::to_string)
            }
        }
    }
}

#[derive(Debug)]
struct Endpoint<T> {
    methods: Methods,
    param_names: Box<[Box<str>]>,
    target: T,
}

/// Literal children. Built as a map; nodes with few children are then turned into a list, because comparing a
/// handful of short strings is cheaper than hashing the segment.
#[derive(Debug)]
enum Literals<T> {
    Few(Vec<(Box<str>, Node<T>)>),
    Many(FxMap<Box<str>, Node<T>>),
}

/// Up to this many literal children are searched linearly.
const FEW_LITERALS: usize = 8;

impl<T> Literals<T> {
    fn get(&self, seg: &str) -> Option<&Node<T>> {
        match self {
            Self::Few(list) => list.iter().find(|(k, _)| **k == *seg).map(|(_, n)| n),
            Self::Many(map) => map.get(seg),
        }
    }

    /// During build the children are always a map.
    fn entry(&mut self, seg: &str) -> &mut Node<T> {
        if let Self::Few(list) = self {
            *self = Self::Many(std::mem::take(list).into_iter().collect());
        }
        match self {
            Self::Many(map) => map.entry(seg.into()).or_default(),
            Self::Few(_) => unreachable!("converted above"),
        }
    }

    fn finish(&mut self) {
        if let Self::Many(map) = self {
            for node in map.values_mut() {
                node.finish();
            }
            if map.len() <= FEW_LITERALS {
                let mut list: Vec<_> = std::mem::take(map).into_iter().collect();
                list.sort_by(|a, b| a.0.cmp(&b.0));
                *self = Self::Few(list);
            }
        }
    }
}

#[derive(Debug)]
struct Node<T> {
    literals: Literals<T>,
    param: Option<Box<Node<T>>>,
    /// Routes ending exactly at this node.
    endpoints: Vec<Endpoint<T>>,
    /// Routes whose last segment `{*x}` starts at this node.
    catch_all: Vec<Endpoint<T>>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Self {
            literals: Literals::Few(Vec::new()),
            param: None,
            endpoints: Vec::new(),
            catch_all: Vec::new(),
        }
    }
}

/// Parameter values collected on the way down the trie.
struct Values<'p> {
    buf: [&'p str; MAX_PARAMS],
    len: usize,
}

impl<T> Node<T> {
    fn finish(&mut self) {
        self.literals.finish();
        if let Some(p) = &mut self.param {
            p.finish();
        }
    }

    /// Depth-first search in precedence order. `rem` is the path after a `/`. `visit` sees each path-matching
    /// endpoint list with the values collected so far and returns `true` to stop.
    fn search<'t, 'p, F>(&'t self, rem: &'p str, vals: &mut Values<'p>, visit: &mut F) -> bool
    where
        F: FnMut(&'t [Endpoint<T>], &Values<'p>) -> bool,
    {
        // A byte scan beats `str::find`'s generic searcher on segments this short.
        let (seg, next) = match rem.bytes().position(|b| b == b'/') {
            Some(i) => (&rem[..i], Some(&rem[i + 1..])),
            None => (rem, None),
        };
        if is_dot_segment(seg) {
            return false; // no route takes a `.` or `..` segment, not even as a parameter or the rest
        }
        if let Some(child) = self.literals.get(seg) {
            if child.descend(next, vals, visit) {
                return true;
            }
        }
        if let Some(child) = &self.param {
            if !seg.is_empty() && vals.len < MAX_PARAMS {
                vals.buf[vals.len] = seg;
                vals.len += 1;
                let found = child.descend(next, vals, visit);
                vals.len -= 1;
                if found {
                    return true;
                }
            }
        }
        self.visit_catch_all(rem, vals, visit)
    }

    /// Continue below a node reached by consuming a segment; `next` is `None` when that was the last segment.
    fn descend<'t, 'p, F>(
        &'t self,
        next: Option<&'p str>,
        vals: &mut Values<'p>,
        visit: &mut F,
    ) -> bool
    where
        F: FnMut(&'t [Endpoint<T>], &Values<'p>) -> bool,
    {
        match next {
            Some(n) => self.search(n, vals, visit),
            None => {
                (!self.endpoints.is_empty() && visit(&self.endpoints, vals))
                    || self.visit_catch_all("", vals, visit)
            }
        }
    }

    fn visit_catch_all<'t, 'p, F>(
        &'t self,
        rem: &'p str,
        vals: &mut Values<'p>,
        visit: &mut F,
    ) -> bool
    where
        F: FnMut(&'t [Endpoint<T>], &Values<'p>) -> bool,
    {
        if self.catch_all.is_empty() || vals.len >= MAX_PARAMS || has_dot_segment(rem) {
            return false;
        }
        vals.buf[vals.len] = rem;
        vals.len += 1;
        let found = visit(&self.catch_all, vals);
        vals.len -= 1;
        found
    }
}

/// An immutable routing table over targets of type `T` (the Python face uses indexes into its own `Vec`).
#[derive(Debug)]
pub struct RoutingTable<T> {
    /// namespace -> name -> target.
    functions: FxMap<Box<str>, FxMap<Box<str>, T>>,
    exact: FxMap<Box<str>, Node<T>>,
    /// Keyed by the suffix with its leading dot: `*.example.com` -> `.example.com`.
    wildcard: FxMap<Box<str>, Node<T>>,
    any: Node<T>,
    len: usize,
}

/// A DNS-1123 label: `a-z0-9-`, starting and ending alphanumeric, 1 to 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// The reserved segment `path`'s first segment is, if it is one (see [`RESERVED_SEGMENTS`]).
pub fn reserved_segment(path: &str) -> Option<&'static str> {
    let rem = path.strip_prefix('/')?;
    let first = rem.find('/').map_or(rem, |i| &rem[..i]);
    RESERVED_SEGMENTS.iter().copied().find(|&s| s == first)
}

/// Whether `path` has a `.` or `..` segment. A byte scan for `.` (paths are short: cheaper than `str::find`'s
/// searcher), then a look at the segment around each dot found.
pub fn has_dot_segment(path: &str) -> bool {
    let b = path.as_bytes();
    let mut from = 0;
    while let Some(i) = b[from..].iter().position(|&c| c == b'.').map(|i| i + from) {
        if i == 0 || b[i - 1] == b'/' {
            let end = if b.get(i + 1) == Some(&b'.') {
                i + 2
            } else {
                i + 1
            };
            if end == b.len() || b[end] == b'/' {
                return true;
            }
        }
        from = i + 1;
    }
    false
}

/// Whether `rem` (a path after its leading `/`) starts with a reserved segment: the lookup's fast form of
/// [`reserved_segment`] (a byte scan of the first segment, then a match the compiler dispatches on length).
fn starts_reserved(rem: &str) -> bool {
    let first = match rem.bytes().position(|b| b == b'/') {
        Some(i) => &rem[..i],
        None => rem,
    };
    matches!(
        first,
        "function" | "async-function" | "invocations" | "api" | "healthz" | "readyz" | "metrics"
    )
}

fn is_dot_segment(seg: &str) -> bool {
    matches!(seg, "." | "..")
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

fn is_param_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_methods(methods: &str) -> Result<Methods, BuildErrorKind> {
    if methods.trim() == "*" {
        return Ok(Methods::Any);
    }
    let mut list: Vec<Box<str>> = Vec::new();
    for m in methods.split(',').map(str::trim) {
        if !is_token(m) || m == "*" {
            return Err(BuildErrorKind::InvalidMethods(format!(
                "{m:?} is not an HTTP method (use \"*\" alone for any method)"
            )));
        }
        let m = m.to_ascii_uppercase().into_boxed_str();
        if !list.contains(&m) {
            list.push(m);
        }
    }
    Ok(Methods::List(list.into_boxed_slice()))
}

enum HostKey {
    Any,
    Exact(Box<str>),
    Wildcard(Box<str>),
}

fn is_host_label_chars(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

fn parse_host(host: &str) -> Result<HostKey, BuildErrorKind> {
    if host.is_empty() {
        return Ok(HostKey::Any);
    }
    let host = host.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host);
    if host.len() > MAX_HOST {
        return Err(BuildErrorKind::InvalidHost("longer than 255 characters"));
    }
    if let Some(suffix) = host.strip_prefix("*.") {
        if !is_host_label_chars(suffix) {
            return Err(BuildErrorKind::InvalidHost(
                "a wildcard is \"*.\" followed by a host name",
            ));
        }
        return Ok(HostKey::Wildcard(format!(".{suffix}").into_boxed_str()));
    }
    if !is_host_label_chars(host) {
        return Err(BuildErrorKind::InvalidHost(
            "expected \"\" (any), a host name without port, or \"*.\" followed by a host name",
        ));
    }
    Ok(HostKey::Exact(host.into()))
}

enum Segment<'a> {
    Literal(&'a str),
    Param(&'a str),
    CatchAll(&'a str),
}

fn parse_pattern(pattern: &str) -> Result<Vec<Segment<'_>>, BuildErrorKind> {
    let Some(body) = pattern.strip_prefix('/') else {
        return Err(BuildErrorKind::InvalidPattern(
            "must start with '/'".to_owned(),
        ));
    };
    let raw: Vec<&str> = body.split('/').collect();
    let mut segments = Vec::with_capacity(raw.len());
    let mut names: Vec<&str> = Vec::new();
    for (i, seg) in raw.iter().enumerate() {
        let last = i + 1 == raw.len();
        let parsed = if let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let (catch_all, name) = match inner.strip_prefix('*') {
                Some(n) => (true, n),
                None => (false, inner),
            };
            if !is_param_name(name) {
                return Err(BuildErrorKind::InvalidPattern(format!(
                    "segment {seg:?}: a parameter name is letters, digits and '_', not starting with a digit"
                )));
            }
            if names.contains(&name) {
                return Err(BuildErrorKind::DuplicateParam(name.to_owned()));
            }
            names.push(name);
            if catch_all && !last {
                return Err(BuildErrorKind::CatchAllNotLast);
            }
            if catch_all {
                Segment::CatchAll(name)
            } else {
                Segment::Param(name)
            }
        } else if seg.contains(['{', '}']) {
            return Err(BuildErrorKind::InvalidPattern(format!(
                "segment {seg:?}: a parameter must fill its whole segment, as \"{{name}}\" or \"{{*name}}\""
            )));
        } else if seg.is_empty() && !last {
            return Err(BuildErrorKind::InvalidPattern(
                "empty segment (\"//\")".to_owned(),
            ));
        } else {
            Segment::Literal(seg)
        };
        segments.push(parsed);
    }
    if names.len() > MAX_PARAMS {
        return Err(BuildErrorKind::TooManyParams);
    }
    Ok(segments)
}

/// Strip `:port` and one trailing `.`, lower-case into `buf`. `None` when the host is too long to be a DNS name.
fn normalize_host<'b>(host: &str, buf: &'b mut [u8; MAX_HOST]) -> Option<&'b str> {
    let host = if host.starts_with('[') {
        host.find(']').map_or(host, |i| &host[..=i])
    } else {
        match host.rfind(':') {
            Some(i) if host[i + 1..].bytes().all(|c| c.is_ascii_digit()) => &host[..i],
            _ => host,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let out = buf.get_mut(..host.len())?;
    out.copy_from_slice(host.as_bytes());
    out.make_ascii_lowercase();
    // Lower-casing ASCII bytes keeps UTF-8 valid.
    std::str::from_utf8(out).ok()
}

impl<T> RoutingTable<T> {
    /// Validate and compile. Fails on the first bad entry, naming it.
    pub fn build<'a>(
        functions: impl IntoIterator<Item = FunctionEntry<'a, T>>,
        routes: impl IntoIterator<Item = RouteEntry<'a, T>>,
    ) -> Result<Self, BuildError> {
        let mut table = Self {
            functions: FxMap::default(),
            exact: FxMap::default(),
            wildcard: FxMap::default(),
            any: Node::default(),
            len: 0,
        };
        for (i, f) in functions.into_iter().enumerate() {
            let err = |kind| BuildError {
                entry: format!("function #{i} ({:?}, {:?})", f.namespace, f.name),
                kind,
            };
            if !is_dns1123_label(f.namespace) {
                return Err(err(BuildErrorKind::InvalidName("namespace")));
            }
            if !is_dns1123_label(f.name) {
                return Err(err(BuildErrorKind::InvalidName("name")));
            }
            let names = table.functions.entry(f.namespace.into()).or_default();
            if names.contains_key(f.name) {
                return Err(err(BuildErrorKind::DuplicateFunction));
            }
            names.insert(f.name.into(), f.target);
            table.len += 1;
        }
        for (i, r) in routes.into_iter().enumerate() {
            let entry = format!(
                "route #{i} ({:?}, {:?}, {:?})",
                r.methods, r.host, r.pattern
            );
            table
                .insert_route(r)
                .map_err(|kind| BuildError { entry, kind })?;
            table.len += 1;
        }
        for node in table.exact.values_mut().chain(table.wildcard.values_mut()) {
            node.finish();
        }
        table.any.finish();
        Ok(table)
    }

    fn insert_route(&mut self, r: RouteEntry<'_, T>) -> Result<(), BuildErrorKind> {
        let methods = parse_methods(r.methods)?;
        let host = parse_host(r.host)?;
        let segments = parse_pattern(r.pattern)?;
        if let Some(Segment::Literal(first)) = segments.first() {
            if let Some(reserved) = RESERVED_SEGMENTS.iter().copied().find(|s| s == first) {
                return Err(BuildErrorKind::ReservedPath(reserved));
            }
        }
        let mut node = match host {
            HostKey::Any => &mut self.any,
            HostKey::Exact(h) => self.exact.entry(h).or_default(),
            HostKey::Wildcard(s) => self.wildcard.entry(s).or_default(),
        };
        let mut param_names: Vec<Box<str>> = Vec::new();
        let mut catch_all = false;
        for seg in &segments {
            match *seg {
                Segment::Literal(s) => node = node.literals.entry(s),
                Segment::Param(name) => {
                    param_names.push(name.into());
                    node = node.param.get_or_insert_with(Box::default);
                }
                Segment::CatchAll(name) => {
                    param_names.push(name.into());
                    catch_all = true;
                }
            }
        }
        let list = if catch_all {
            &mut node.catch_all
        } else {
            &mut node.endpoints
        };
        if let Some(method) = list.iter().find_map(|e| e.methods.overlap(&methods)) {
            return Err(BuildErrorKind::DuplicateRoute(method));
        }
        list.push(Endpoint {
            methods,
            param_names: param_names.into_boxed_slice(),
            target: r.target,
        });
        Ok(())
    }

    /// Number of entries (functions plus routes).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Find the target for a request. Allocates nothing unless it fails with `MethodNotAllowed`.
    ///
    /// A reserved path ([`RESERVED_SEGMENTS`]) is looked up among the functions only, and a path with a dot
    /// segment matches nothing.
    pub fn lookup<'t, 'p>(
        &'t self,
        method: &str,
        host: &str,
        path: &'p str,
    ) -> Result<Match<'t, 'p, T>, LookupError> {
        if let Some(m) = self.lookup_function(path) {
            return Ok(m);
        }
        let Some(rem) = path.strip_prefix('/') else {
            return Err(LookupError::NotFound);
        };
        if starts_reserved(rem) {
            return Err(LookupError::NotFound);
        }
        let mut buf = [0u8; MAX_HOST];
        let host = if self.exact.is_empty() && self.wildcard.is_empty() {
            None
        } else {
            normalize_host(host, &mut buf)
        };
        // The values stay in `vals.buf` after the search unwinds (only `len` is popped), so a match is read from
        // there once, instead of copying the array on the way up.
        let mut vals = Values {
            buf: [""; MAX_PARAMS],
            len: 0,
        };
        let mut found: Option<&'t Endpoint<T>> = None;
        let mut path_matched = false;
        self.each_tier(host, |node| {
            vals.len = 0;
            node.search(rem, &mut vals, &mut |endpoints, _| {
                path_matched = true;
                found = endpoints.iter().find(|e| e.methods.accepts(method));
                found.is_some()
            })
        });
        if let Some(e) = found {
            return Ok(Match {
                target: &e.target,
                rest: path,
                names: &e.param_names,
                values: vals.buf,
            });
        }
        if !path_matched {
            return Err(LookupError::NotFound);
        }
        Err(LookupError::MethodNotAllowed(
            self.allowed_methods(host, rem),
        ))
    }

    /// The function entry for a `/function/{name}[.{namespace}][/{rest}]` path, if any.
    fn lookup_function<'t, 'p>(&'t self, path: &'p str) -> Option<Match<'t, 'p, T>> {
        let tail = path.strip_prefix(FUNCTION_PREFIX)?;
        let (segment, rest) = tail.find('/').map_or((tail, ""), |i| tail.split_at(i));
        let (name, namespace) = segment
            .split_once('.')
            .unwrap_or((segment, DEFAULT_NAMESPACE));
        let target = self.functions.get(namespace)?.get(name)?;
        if !rest.is_empty() && has_dot_segment(rest) {
            return None;
        }
        Some(Match {
            target,
            rest,
            names: &[],
            values: [""; MAX_PARAMS],
        })
    }

    /// Call `f` on each host tier's trie in precedence order until it returns `true`.
    fn each_tier<'t>(&'t self, host: Option<&str>, mut f: impl FnMut(&'t Node<T>) -> bool) {
        if let Some(host) = host {
            if let Some(node) = self.exact.get(host) {
                if f(node) {
                    return;
                }
            }
            if !self.wildcard.is_empty() {
                // Longest suffix first: for a.b.example.com try .b.example.com, then .example.com, then .com.
                for (i, _) in host.match_indices('.').filter(|&(i, _)| i > 0) {
                    if let Some(node) = self.wildcard.get(&host[i..]) {
                        if f(node) {
                            return;
                        }
                    }
                }
            }
        }
        f(&self.any);
    }

    fn allowed_methods(&self, host: Option<&str>, rem: &str) -> Vec<String> {
        let mut allowed: Vec<String> = Vec::new();
        self.each_tier(host, |node| {
            let mut vals = Values {
                buf: [""; MAX_PARAMS],
                len: 0,
            };
            node.search(rem, &mut vals, &mut |endpoints, _| {
                for e in endpoints {
                    if let Methods::List(list) = &e.methods {
                        allowed.extend(list.iter().map(ToString::to_string));
                    }
                }
                false
            });
            false
        });
        allowed.sort_unstable();
        allowed.dedup();
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[(&'static str, &'static str, &'static str)]) -> RoutingTable<usize> {
        RoutingTable::build(
            [FunctionEntry {
                namespace: "default",
                name: "hello",
                target: 1000,
            }],
            routes
                .iter()
                .enumerate()
                .map(|(i, &(methods, host, pattern))| RouteEntry {
                    methods,
                    host,
                    pattern,
                    target: i,
                }),
        )
        .unwrap()
    }

    #[test]
    fn normalizes_hosts() {
        let mut buf = [0u8; MAX_HOST];
        assert_eq!(
            normalize_host("API.Example.com:8080", &mut buf),
            Some("api.example.com")
        );
        assert_eq!(
            normalize_host("example.com.", &mut buf),
            Some("example.com")
        );
        assert_eq!(normalize_host("[::1]:80", &mut buf), Some("[::1]"));
        assert_eq!(normalize_host(&"a".repeat(300), &mut buf), None);
    }

    #[test]
    fn function_segment_splits_at_first_dot() {
        let t = table(&[]);
        assert_eq!(
            *t.lookup("GET", "", "/function/hello").unwrap().target,
            1000
        );
        assert_eq!(
            t.lookup("GET", "", "/function/hello.default/x")
                .unwrap()
                .rest,
            "/x"
        );
        assert!(t.lookup("GET", "", "/function/hello.default.x").is_err());
        assert!(t.lookup("GET", "", "/function/.default").is_err());
    }

    #[test]
    fn backtracks_from_literal_to_param() {
        let t = table(&[("GET", "", "/a/b/c"), ("GET", "", "/a/{x}/d")]);
        let m = t.lookup("GET", "", "/a/b/d").unwrap();
        assert_eq!(*m.target, 1);
        assert_eq!(m.params().collect::<Vec<_>>(), [("x", "b")]);
    }

    #[test]
    fn param_does_not_match_empty_segment() {
        let t = table(&[("GET", "", "/u/{id}")]);
        assert_eq!(
            t.lookup("GET", "", "/u/").unwrap_err(),
            LookupError::NotFound
        );
    }
}
