//! Async callbacks (`X-Callback-Url`), as the Python runtime delivers them (`lf_runtime.asyncworker.post`,
//! `lf_core.ssrf`): the record view sent (POST) as JSON, the URL checked against SSRF at delivery time (HTTP or
//! https, no credentials, every resolved address public unless `LF_CALLBACK_ALLOW_PRIVATE`), the request sent
//! to a checked address only (no second resolution: DNS rebinding).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

pub const ATTEMPTS: u32 = 4;
pub const BACKOFF: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_URL_LENGTH: usize = 2048;

/// A checked callback URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    /// As written: the Host header and the TLS server name.
    pub host: String,
    pub port: u16,
    /// Path and query, for the request line.
    pub path: String,
    /// Connect to these only.
    pub addresses: Vec<IpAddr>,
}

/// Why a callback failed: `Refused` (the URL may not be called) ends the delivery.
#[derive(Debug)]
pub enum Failure {
    Refused(String),
    Failed(String),
}

// ------------------------------------------------------------------------------------------- SSRF

/// Whether a callback may go to `address` (`lf_core.ssrf.is_public`).
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(inner) => is_public_v4(inner),
            None => is_public_v6(v6),
        },
    }
}

fn in_v4(address: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    u32::from(address) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn is_public_v4(a: Ipv4Addr) -> bool {
    const NON_PUBLIC: [([u8; 4], u32); 16] = [
        ([0, 0, 0, 0], 8),
        ([10, 0, 0, 0], 8),
        ([100, 64, 0, 0], 10),
        ([127, 0, 0, 0], 8),
        ([169, 254, 0, 0], 16),
        ([172, 16, 0, 0], 12),
        ([192, 0, 0, 0], 24),
        ([192, 0, 2, 0], 24),
        ([192, 88, 99, 0], 24),
        ([192, 168, 0, 0], 16),
        ([198, 18, 0, 0], 15),
        ([198, 51, 100, 0], 24),
        ([203, 0, 113, 0], 24),
        ([224, 0, 0, 0], 4),
        ([240, 0, 0, 0], 4),
        ([255, 255, 255, 255], 32),
    ];
    !NON_PUBLIC.iter().any(|&(net, bits)| in_v4(a, net, bits))
}

fn in_v6(address: Ipv6Addr, net: u128, bits: u32) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u128::MAX << (128 - bits)
    };
    u128::from(address) & mask == net & mask
}

fn is_public_v6(a: Ipv6Addr) -> bool {
    const NON_PUBLIC: [(u128, u32); 13] = [
        (0, 128),
        (1, 128),
        (0x0064_ff9b_0001 << 80, 48),
        (0x0100 << 112, 64),
        (0x2001 << 112, 23),
        (0x2001_0db8 << 96, 32),
        (0x2002 << 112, 16),
        (0x3fff << 112, 20),
        (0x5f00 << 112, 16),
        (0xfc00 << 112, 7),
        (0xfe80 << 112, 10),
        (0xfec0 << 112, 10),
        (0xff00 << 112, 8),
    ];
    // global unicast only: 2000::/3
    in_v6(a, 0x2000 << 112, 3) && !NON_PUBLIC.iter().any(|&(net, bits)| in_v6(a, net, bits))
}

/// The IPv4 address an IPv6 one carries (mapped, compatible, NAT64, 6to4).
fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(a);
    let low =
        |shift: u32| Ipv4Addr::from(u32::try_from((bits >> shift) & 0xffff_ffff).unwrap_or(0));
    if let Some(v4) = a.to_ipv4_mapped() {
        return Some(v4);
    }
    if in_v6(a, 0x0064_ff9b << 96, 96) {
        return Some(low(0));
    }
    if in_v6(a, 0x2002 << 112, 16) {
        return Some(low(80));
    }
    (bits >> 32 == 0 && bits > 1).then(|| low(0))
}

/// The address a host names by itself: an IP literal or an `inet_aton` number (decimal, octal, hex, short).
pub fn numeric_host(host: &str) -> Option<IpAddr> {
    if let Ok(address) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Some(address);
    }
    let first = host.as_bytes().first()?;
    if !first.is_ascii_digit()
        || !host
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == 'x' || c == 'X' || c == '.')
    {
        return None;
    }
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(parts.len());
    for part in &parts {
        let value = if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            u64::from_str_radix(hex, 16).ok()?
        } else if part.len() > 1 && part.starts_with('0') {
            u64::from_str_radix(&part[1..], 8).ok()?
        } else {
            part.parse().ok()?
        };
        values.push(value);
    }
    let last = values.len() - 1;
    let mut n: u64 = 0;
    for (i, &v) in values[..last].iter().enumerate() {
        if v > 0xff {
            return None;
        }
        n |= v << (24 - 8 * i);
    }
    if values[last] >= 1 << (8 * (4 - last)) {
        return None;
    }
    n |= values[last];
    Some(IpAddr::V4(Ipv4Addr::from(u32::try_from(n).ok()?)))
}

/// `(https, host, port, path)` of a well-formed http(s) URL, without resolving it (`ssrf.check_url`).
pub fn check_url(url: &str, allow_private: bool) -> Result<(bool, String, u16, String), String> {
    if url.len() > MAX_URL_LENGTH {
        return Err(format!(
            "callback URL longer than {MAX_URL_LENGTH} characters"
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("callback URL holds whitespace or control characters".to_owned());
    }
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let https = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        other => {
            let other = if other.is_empty() { "relative" } else { other };
            return Err(format!("callback URL must be http or https, not '{other}'"));
        }
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err("callback URL may not carry credentials".to_owned());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("callback URL has a bad host")?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("callback URL has no host".to_owned());
    }
    let port = match port {
        None | Some("") => {
            if https {
                443
            } else {
                80
            }
        }
        Some(port) => port
            .parse::<u16>()
            .map_err(|_| "callback URL has a bad port".to_owned())?,
    };
    let path = if tail.is_empty() {
        "/".to_owned()
    } else if tail.starts_with('?') {
        format!("/{tail}")
    } else {
        tail.to_owned()
    };
    let host = host.to_ascii_lowercase();
    if let Some(literal) = numeric_host(&host) {
        if !allow_private && !is_public(literal) {
            return Err(format!(
                "callback URL points to a non-public address ({literal})"
            ));
        }
    }
    Ok((https, host, port, path))
}

/// Check the URL, resolve its host and check every address (`ssrf.resolve_target`).
pub async fn resolve_target(url: &str, allow_private: bool) -> Result<Target, String> {
    let (https, host, port, path) = check_url(url, allow_private)?;
    let addresses = if let Some(literal) = numeric_host(&host) {
        vec![literal]
    } else {
        let found: Vec<IpAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("callback host '{host}' does not resolve: {e}"))?
            .map(|a| a.ip())
            .collect();
        if found.is_empty() {
            return Err(format!("callback host '{host}' does not resolve"));
        }
        found
    };
    for address in &addresses {
        if !allow_private && !is_public(*address) {
            // not the address: the message becomes the callback outcome in the call record, which the caller reads
            return Err(format!(
                "callback host '{host}' resolves to a non-public address"
            ));
        }
    }
    Ok(Target {
        https,
        host,
        port,
        path,
        addresses,
    })
}

// ------------------------------------------------------------------------------------------- delivery

/// POST `body` to `url` (checked, to a checked address); the response status.
pub async fn post(
    url: &str,
    body: &[u8],
    call_id: &str,
    allow_private: bool,
) -> Result<u16, Failure> {
    let target = resolve_target(url, allow_private)
        .await
        .map_err(Failure::Refused)?;
    let host_header = {
        let host = if target.host.contains(':') {
            format!("[{}]", target.host)
        } else {
            target.host.clone()
        };
        if matches!(target.port, 80 | 443) {
            host
        } else {
            format!("{host}:{}", target.port)
        }
    };
    let mut request = format!(
        "POST {} HTTP/1.1\r\nHost: {host_header}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         X-Call-Id: {call_id}\r\nUser-Agent: litefunctions-callback\r\nConnection: close\r\n\r\n",
        target.path,
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let exchange = async {
        let address = SocketAddr::new(target.addresses[0], target.port);
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|e| e.to_string())?;
        if target.https {
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(tls_config())
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            exchange(tls, &request).await
        } else {
            exchange(tcp, &request).await
        }
    };
    let line = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| Failure::Failed("TimeoutError()".to_owned()))?
        .map_err(Failure::Failed)?;
    let mut parts = line.split_whitespace().skip(1);
    parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
        let head: String = line.chars().take(80).collect();
        Failure::Failed(format!("not an HTTP response: {head:?}"))
    })
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
) -> Result<String, String> {
    stream.write_all(request).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .await
        .map_err(|e| e.to_string())?;
    Ok(line)
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().unwrap_or_default() {
                let _ = roots.add(cert);
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Deliver a callback with retries; the outcome the record keeps (`delivered`, `failed: ...`, `refused: ...`)
/// and the attempts made.
pub async fn deliver(url: &str, body: &[u8], call_id: &str, allow_private: bool) -> (String, u32) {
    let mut attempt = 1;
    loop {
        let outcome = match post(url, body, call_id, allow_private).await {
            Ok(status) if (200..300).contains(&status) => return ("delivered".to_owned(), attempt),
            Ok(status) => format!("failed: status {status}"),
            Err(Failure::Refused(reason)) => return (format!("refused: {reason}"), attempt),
            Err(Failure::Failed(reason)) => format!("failed: {reason}"),
        };
        if attempt == ATTEMPTS {
            return (outcome, attempt);
        }
        tokio::time::sleep(BACKOFF * 2u32.pow(attempt - 1)).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_host_is_named_without_the_address_it_resolves_to() {
        // the message becomes the callback outcome in the call record, which the caller reads
        let Err(refused) = resolve_target("http://localhost:9/hook", false).await else {
            panic!("localhost is refused");
        };
        assert!(refused.contains("'localhost'"), "{refused}");
        assert!(
            !refused.contains("127.0.0.1") && !refused.contains("::1"),
            "{refused}"
        );
    }

    #[test]
    fn public_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "::ffff:127.0.0.1",
            "fe80::1",
            "fc00::1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "0.0.0.0",
            "224.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        assert_eq!(
            numeric_host("2130706433"),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            numeric_host("0177.0.0.1"),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(numeric_host("0x7f.1"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(numeric_host("example.com"), None);
    }

    #[test]
    fn urls() {
        assert_eq!(
            check_url("http://Example.com:8080/hook?x=1#frag", false).unwrap(),
            (false, "example.com".into(), 8080, "/hook?x=1".into())
        );
        assert_eq!(
            check_url("https://example.com", false).unwrap(),
            (true, "example.com".into(), 443, "/".into())
        );
        for bad in [
            "ftp://example.com/",
            "http://u:p@example.com/",
            "http://127.0.0.1/",
            "http://2130706433/",
            "http:///x",
            "http://example.com:99999/",
            "http://exa mple.com/",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad}");
        }
        assert!(check_url("http://127.0.0.1:9/", true).is_ok());
    }
}
