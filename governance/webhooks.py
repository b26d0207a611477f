"""Webhook mechanics: which URLs may receive, how a delivery is signed and sent.

The signature header is `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`,
so a receiver can refuse replays older than its tolerance and a tampered body.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import http.client
import ipaddress
import random
import secrets
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from governance import crypto

SIGNATURE_HEADER = "X-Webhook-Signature"
ID_HEADER = "X-Webhook-Id"
EVENT_HEADER = "X-Webhook-Event"

# Cloud metadata services outside 169.254.0.0/16 (AWS IPv6, Alibaba).
_METADATA_ADDRESSES = {
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),
}
_METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}

# Special-purpose ranges that are not globally reachable (IANA's IPv4 and IPv6 registries).
# `is_global` alone is not enough: the interpreter's table differs between patch releases
# (3.11.7 calls fec0::/10, 64:ff9b:1::/48 and 3fff::/20 global).
_NOT_GLOBAL_V4 = [
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
]
# Global unicast is 2000::/3; inside it, these are not reachable.
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_NOT_GLOBAL_V6 = [
    ipaddress.IPv6Network(n) for n in ("2001::/23", "2001:db8::/32", "3fff::/20", "5f00::/16")
]
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookUrlRefused(ValueError):
    """The URL is not http(s), or its port or address may not receive webhooks."""


def _unwrapped(ip: IPAddress) -> list[IPAddress]:
    """The addresses a packet to `ip` actually reaches: the IPv4 inside IPv4-mapped,
    IPv4-compatible, 6to4, NAT64 (well-known prefix) and Teredo (server and client) forms.

    A wrapper is judged by what it wraps: `64:ff9b::a00:1` is 10.0.0.1 behind a translator,
    and `2002:7f00:1::` is 127.0.0.1 behind a relay.
    """
    if isinstance(ip, ipaddress.IPv4Address):
        return [ip]
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    if ip in _NAT64_WELL_KNOWN or (
        ip in _IPV4_COMPATIBLE and int(ip) > 1  # not :: or ::1, which are IPv6's own
    ):
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    return [ip]


def _public(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv4Address):
        return ip.is_global and not any(ip in n for n in _NOT_GLOBAL_V4)
    return ip in _GLOBAL_UNICAST_V6 and ip.is_global and not any(ip in n for n in _NOT_GLOBAL_V6)


def _never_allowed(ip: IPAddress) -> bool:
    # Refused even where private receivers are allowed: nothing listening there is a receiver.
    return (
        ip.is_link_local
        or ip in _METADATA_ADDRESSES
        or ip.is_multicast
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv4Address) and ip in _THIS_NETWORK)
    )


def _address_refused(ip: IPAddress) -> bool:
    for inner in {ip, *_unwrapped(ip)}:
        if _never_allowed(inner):
            return True
    if all(_public(inner) for inner in _unwrapped(ip)):
        return False
    # Loopback and private ranges reach the service's own neighbours (Redis, PostgreSQL):
    # refused unless the deployment says its receivers live there.
    return not settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        pass
    try:
        # The resolver reads `2130706433`, `0x7f.1` and `127.1` as IPv4 too.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def _port_allowed(port: int) -> bool:
    return port in (80, 443) or any(
        port == allowed if isinstance(allowed, int) else port in allowed
        for allowed in settings.WEBHOOK_ALLOWED_PORTS
    )


_ADDRESS_REFUSED = (
    "Webhook URLs must point at public addresses: not link-local, metadata or (unless "
    "allowed) private ones."
)


@dataclass(frozen=True)
class Target:
    """Where a delivery goes: the URL's host (for Host and TLS) and the addresses checked."""

    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...] = ()


def _target(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise WebhookUrlRefused("Webhook URLs must use http or https.")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise WebhookUrlRefused("Webhook URLs need a host.")
    if parts.username or parts.password:
        raise WebhookUrlRefused("Webhook URLs must not carry credentials.")
    try:
        port = parts.port
    except ValueError as exc:
        raise WebhookUrlRefused("Webhook URL's port is not a number in 1-65535.") from exc
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    if not _port_allowed(port):
        raise WebhookUrlRefused(
            f"Webhook URLs must use port 80 or 443 (or one in WEBHOOK_ALLOWED_PORTS), not {port}."
        )
    literal = _literal_address(host)
    if host in _METADATA_HOSTS or (literal is not None and _address_refused(literal)):
        raise WebhookUrlRefused(_ADDRESS_REFUSED)
    if host == "localhost" and not settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS:
        raise WebhookUrlRefused("Webhook URLs must not point at this host.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme=parts.scheme, host=host, port=port, path=path)


def url_check(url: str) -> str:
    """Refuses what no delivery may reach, as far as the URL itself shows: a scheme but
    http(s), credentials, a port but 80, 443 and WEBHOOK_ALLOWED_PORTS, a literal address
    that is not public (private ones only with WEBHOOK_ALLOW_PRIVATE_NETWORKS), metadata
    hosts. A host name's addresses are judged at each delivery (`url_resolve`)."""
    _target(url)
    return url


def resolve(host: str, port: int) -> list[str]:
    """The host's addresses in the resolver's order, duplicates dropped."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def url_resolve(url: str) -> Target:
    """`url_check`, then the host resolved once and every answer judged.

    One refused answer refuses the delivery: a name that mixes public and internal addresses
    is a rebinding attempt, not a receiver. The delivery then connects to these addresses and
    no others, so a second resolution (DNS rebinding) has nothing to change.
    """
    target = _target(url)
    try:
        answers = resolve(target.host, target.port)
    except (OSError, UnicodeError) as exc:
        raise WebhookUrlRefused(f"Host {target.host!r} does not resolve.") from exc
    addresses = [_literal_address(answer) for answer in answers]
    if not addresses or any(ip is None or _address_refused(ip) for ip in addresses):
        raise WebhookUrlRefused(
            "Webhook host resolves to a link-local, metadata or (unless allowed) private address."
        )
    return Target(
        scheme=target.scheme,
        host=target.host,
        port=target.port,
        path=target.path,
        addresses=tuple(answers),
    )


def secret_generate() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def secret_aad(subscription_id: object) -> bytes:
    return f"webhook-secret:{subscription_id}".encode()


def secret_encrypt(secret: str, *, subscription_id: object) -> bytes:
    return crypto.encrypt(secret.encode(), aad=secret_aad(subscription_id))


def secret_decrypt(ciphertext: bytes | memoryview, *, subscription_id: object) -> str:
    return crypto.decrypt(bytes(ciphertext), aad=secret_aad(subscription_id)).decode()


def signature(secret: str, *, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def signature_verify(
    secret: str, *, header: str, body: bytes, tolerance_seconds: int = 300, now: float | None = None
) -> bool:
    """What a receiver runs: True when the header was made with `secret` over this body,
    recently enough."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_seconds:
        return False
    expected = signature(secret, timestamp=timestamp, body=body)
    return hmac.compare_digest(expected, header.strip())


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff with jitter ("equal jitter": half fixed, half random)."""
    base = float(settings.WEBHOOK_BACKOFF_BASE_SECONDS)
    cap = float(settings.WEBHOOK_BACKOFF_MAX_SECONDS)
    delay = min(cap, base * (2 ** max(0, attempts - 1)))
    return delay / 2 + random.uniform(0, delay / 2)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Certificates verified against the URL's host name, as urllib would.
    return ssl.create_default_context()


def _socket_to(addresses: tuple[str, ...], port: int, timeout: float | None) -> socket.socket:
    """A connection to the first of the checked addresses that answers; never a new lookup."""
    error: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as exc:
            error = exc
    raise error or OSError("no address to connect to")


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Speaks HTTP to `host` (the Host header) over a socket to a checked address."""

    def __init__(self, target: Target, *, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.addresses = target.addresses

    def connect(self) -> None:
        self.sock = _socket_to(self.addresses, self.port, self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    default_port = http.client.HTTPS_PORT

    def connect(self) -> None:
        super().connect()
        # SNI and certificate verification use the URL's host name, not the address.
        self.sock = _tls_context().wrap_socket(self.sock, server_hostname=self.host)


@dataclass(frozen=True)
class SendResult:
    ok: bool
    status_code: int | None
    error: str


def send(*, url: str, body: bytes, headers: dict[str, str], timeout: float) -> SendResult:
    """One POST with a hard timeout; any answer but 2xx, or none, is a failure.

    Redirects are answers, not followed: one could lead anywhere, the metadata service
    included.
    """
    try:
        target = url_resolve(url)
    except WebhookUrlRefused as exc:
        return SendResult(False, None, str(exc))
    kind = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    connection = kind(target, timeout=timeout)
    try:
        connection.request(
            "POST", target.path, body=body, headers={"Connection": "close", **headers}
        )
        response = connection.getresponse()
        response.read(65536)
        status = int(response.status)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return SendResult(False, None, f"{type(exc).__name__}: {exc}"[:500])
    finally:
        connection.close()
    ok = 200 <= status < 300
    return SendResult(ok, status, "" if ok else f"HTTP {status}")
