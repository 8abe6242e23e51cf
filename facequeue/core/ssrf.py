"""SSRF guard: decide whether a URL may be fetched, and pin the address it resolved to.

The fetcher connects only to the addresses in the returned ``CheckedURL.ips`` instead of
resolving the host again, so a DNS answer that changes between check and connect (DNS
rebinding) cannot redirect it. The API runs ``check_url_at_submit`` when a task or webhook endpoint is
submitted, so a URL the workers would refuse is refused at once, in the same words: for media, the part
that needs no DNS; for webhook URLs (sent by us, never fetched by a worker that may see other DNS), what
the name resolves to as well.
"""

from __future__ import annotations

import ipaddress
import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as ResolveTimeout
from dataclasses import dataclass

import httpx

from facequeue.core.errors import ErrorCode, TaskError
from facequeue.core.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = ("http", "https")
_NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
# getaddrinfo has no timeout of its own: submit-time lookups run here, so a resolver that hangs holds
# at most these threads, never a request past its timeout
_SUBMIT_RESOLVER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="submit-resolve")


@dataclass(frozen=True)
class CheckedURL:
    """A URL that passed the guard, with the addresses the fetcher may connect to, in preference order."""

    url: httpx.URL
    ips: tuple[IPAddress, ...]

    @property
    def host(self) -> str:
        return self.url.host

    @property
    def port(self) -> int:
        return effective_port(self.url)


def check_url(url: str, settings: Settings) -> CheckedURL:
    """Validate scheme and host, resolve the host, and refuse non-public addresses unless allow-listed."""
    parsed = parse_url(url)
    addresses = resolve(parsed.host, effective_port(parsed))
    if parsed.host not in _allowed_hostnames(settings):
        for ip in addresses:
            _refuse_if_forbidden(ip, settings)
    return CheckedURL(url=parsed, ips=tuple(addresses))


def check_url_at_submit(url: str, settings: Settings, resolve_host: bool = False) -> httpx.URL:
    """The URL's form, and its address when the host is an IPv4 or IPv6 literal, in any spelling the resolver
    accepts (``2130706433``, ``0x7f.1``, ``127.1``). With ``resolve_host``, a host name's addresses too, as
    resolved within FACEQUEUE_FETCH_CONNECT_TIMEOUT; a name that does not resolve by then is judged at send
    time (its DNS may not exist yet). Without it, host names are judged by the worker, once resolved."""
    parsed = parse_url(url)
    if parsed.host in _allowed_hostnames(settings):
        return parsed
    literal = _literal_address(parsed.host)
    if literal is not None:
        addresses = [literal]
    elif resolve_host:
        addresses = _resolve_within(parsed.host, effective_port(parsed), settings.fetch_connect_timeout)
    else:
        addresses = []
    for ip in addresses:
        _refuse_if_forbidden(ip, settings)
    return parsed


def _resolve_within(host: str, port: int, timeout: float) -> list[IPAddress]:
    """The addresses ``host`` resolves to, or none when it does not resolve within ``timeout`` seconds."""
    try:
        return _SUBMIT_RESOLVER.submit(resolve, host, port).result(timeout=timeout)
    except (TaskError, ResolveTimeout):
        return []


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        # inet_aton is the parser getaddrinfo applies to numeric hosts, legacy forms included
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def parse_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise TaskError(ErrorCode.INVALID_URL, f"{url!r} is not a valid URL: {exc}") from exc
    if not parsed.scheme:
        raise TaskError(ErrorCode.INVALID_URL, f"{url!r} is not an absolute http(s) URL")
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise TaskError(ErrorCode.INVALID_URL, f"scheme {parsed.scheme!r} is not allowed, only http and https")
    if not parsed.host:
        raise TaskError(ErrorCode.INVALID_URL, f"{url!r} has no host")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise TaskError(ErrorCode.INVALID_URL, f"port {parsed.port} is out of range")
    return parsed


def effective_port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def resolve(host: str, port: int) -> list[IPAddress]:
    """All addresses ``host`` resolves to, deduplicated, in resolver order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:  # its strerror is the resolver's reason alone
        raise TaskError(ErrorCode.DOWNLOAD_FAILED, f"could not resolve host {host!r}: {exc.strerror}") from exc
    except UnicodeError as exc:  # a host name IDNA cannot encode
        raise TaskError(ErrorCode.DOWNLOAD_FAILED, f"could not resolve host {host!r}: {exc}") from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        # Drop an IPv6 zone id ("fe80::1%eth0"); the address itself is what gets judged.
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise TaskError(ErrorCode.DOWNLOAD_FAILED, f"could not resolve host {host!r}: no addresses")
    return addresses


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be fetched from, or None when it is a public address."""
    embedded = _embedded_ipv4(ip)
    if embedded is not None and (reason := forbidden_reason(embedded)):
        return f"{reason} (embeds {embedded})"
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        # Catches what the flags above miss, e.g. 100.64.0.0/10 carrier-grade NAT.
        ("not globally routable", not ip.is_global),
    )
    return next((reason for reason, applies in checks if applies), None)


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 transition form (mapped, 6to4, Teredo, NAT64) carries."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64_PREFIX:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _refuse_if_forbidden(ip: IPAddress, settings: Settings) -> None:
    reason = forbidden_reason(ip)
    if reason is not None and not _in_allowed_networks(ip, settings):
        raise TaskError(ErrorCode.URL_FORBIDDEN, f"address {ip} is {reason}")


def _allowed_hostnames(settings: Settings) -> set[str]:
    return {entry.lower() for entry in settings.allowed_hosts if isinstance(entry, str)}


def _in_allowed_networks(ip: IPAddress, settings: Settings) -> bool:
    candidates = [ip] + ([embedded] if (embedded := _embedded_ipv4(ip)) else [])
    networks = [entry for entry in settings.allowed_hosts if not isinstance(entry, str)]
    return any(candidate in network for candidate in candidates for network in networks)
