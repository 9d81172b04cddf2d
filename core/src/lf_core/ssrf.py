"""Callback URLs guarded against SSRF (docs/operations.md, "Async calls": callbacks).

A callback may only go to `http`/`https` on a public address. The host is resolved and *every* address it
resolves to must be public (a name that resolves to one public and one private address is refused), and the
caller must then connect to one of the checked addresses — not resolve the name again (DNS rebinding).
Refused: loopback, private (RFC 1918, ULA), link-local (incl. 169.254.169.254, the cloud metadata service),
CGNAT, multicast, reserved, unspecified; IPv4-mapped/-compatible, NAT64 and 6to4 IPv6 forms are unwrapped
first; hosts written as decimal, octal or hex numbers (`2130706433`, `0177.0.0.1`, `0x7f.1`) are read the way
`inet_aton` reads them. `allow_private` (LF_CALLBACK_ALLOW_PRIVATE) lifts all of it, for tests and closed
networks.

A refusal's message goes back to whoever submitted the URL, so it never says which address a name resolved to
(that would map internal names to internal addresses for anyone who asks); `UnsafeUrl.detail` keeps it for the log.
The lookup itself has no timeout here: callers bound it (the ingestor waits LF_CALLBACK_RESOLVE_TIMEOUT at most).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
MAX_URL_LENGTH = 2048


class UnsafeUrl(ValueError):  # noqa: N818 (a refusal, named for what it refuses)
    """A callback URL that is malformed or points somewhere callbacks may not go.

    The message is for the caller; `detail` (may be empty) is for the log only: what the host resolved to."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class Target(NamedTuple):
    scheme: str
    host: str
    """As written (the Host header and TLS server name)."""
    port: int
    path: str
    """Path and query, for the request line."""
    addresses: tuple[str, ...]
    """The checked addresses; connect to these only."""


def system_resolver(host: str, port: int) -> list[str]:
    return list(dict.fromkeys(str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))


def numeric_host(host: str) -> IPAddress | None:
    """The address a host names by itself: an IP literal, or an `inet_aton` number (decimal, octal, hex, short)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host) and host[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def embedded_v4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, compatible, NAT64, 6to4), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return address.sixtofour
    packed = int(address)
    if packed >> 32 == 0 and packed > 1:  # ::a.b.c.d (deprecated IPv4-compatible)
        return ipaddress.IPv4Address(packed)
    return None


def is_public(address: IPAddress) -> bool:
    inner = embedded_v4(address)
    if inner is not None:
        return is_public(inner)
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return False
    return (
        not (
            address.is_private
            or address.is_loopback
            or address.is_link_local
            or address.is_multicast
            or address.is_reserved
            or address.is_unspecified
            or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
        )
        and address.is_global
    )


def check_url(url: str, *, allow_private: bool = False) -> tuple[str, str, int, str]:
    """`(scheme, host, port, path)` of a well-formed http(s) URL, without resolving it.

    Raises:
        UnsafeUrl: not http/https, no host, credentials in it, a bad port, too long.
    """
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"callback URL longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        raise UnsafeUrl("callback URL holds whitespace or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl(f"callback URL must be http or https, not {parts.scheme or 'relative'!r}")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("callback URL may not carry credentials")
    host = parts.hostname
    if not host:
        raise UnsafeUrl("callback URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeUrl("callback URL has a bad port") from None
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    literal = numeric_host(host)
    if literal is not None and not allow_private and not is_public(literal):
        raise UnsafeUrl(f"callback URL points to a non-public address ({literal})")
    return parts.scheme, host, port, path


def resolve_target(url: str, *, allow_private: bool = False, resolve: Resolver = system_resolver) -> Target:
    """Check the URL, resolve its host and check every address.

    Raises:
        UnsafeUrl: see `check_url`, or the host does not resolve, or any address is not public.
    """
    scheme, host, port, path = check_url(url, allow_private=allow_private)
    literal = numeric_host(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = resolve(host, port)
        except OSError as exc:
            raise UnsafeUrl(f"callback host {host!r} does not resolve: {exc}") from None
        if not addresses:
            raise UnsafeUrl(f"callback host {host!r} does not resolve")
    checked = []
    for raw in addresses:
        try:
            address = ipaddress.ip_address(raw.split("%")[0])
        except ValueError:
            raise UnsafeUrl(f"callback host {host!r} did not resolve to an address", f"resolved to {raw!r}") from None
        if not allow_private and not is_public(address):
            raise UnsafeUrl(f"callback host {host!r} resolves to a non-public address", f"{host} resolves to {address}")
        checked.append(str(address))
    return Target(scheme, host, port, path, tuple(checked))
