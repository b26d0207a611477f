"""Webhook mechanics: which URLs may receive, how a delivery is signed and sent.

The signature header is `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`,
so a receiver can refuse replays older than its tolerance and a tampered body.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import random
import secrets
import socket
import time
import urllib.error
import urllib.request
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


class WebhookUrlRefused(ValueError):
    """The URL is not http(s) or points at a link-local or metadata address."""


def _address_refused(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_link_local or ip in _METADATA_ADDRESSES or ip.is_multicast or ip.is_unspecified:
        return True
    # Loopback and private ranges reach the service's own neighbours (Redis, PostgreSQL):
    # refused unless the deployment says its receivers live there.
    return not settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS and (ip.is_loopback or ip.is_private)


def url_check(url: str, *, resolve: bool = False) -> str:
    """Refuses non-http(s) URLs and link-local/metadata targets.

    With `resolve`, the host's addresses are checked too (at delivery, so a DNS answer that
    changed since the subscription was made cannot reach the metadata service).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise WebhookUrlRefused("Webhook URLs must use http or https.")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise WebhookUrlRefused("Webhook URLs need a host.")
    if parts.username or parts.password:
        raise WebhookUrlRefused("Webhook URLs must not carry credentials.")
    if host in _METADATA_HOSTS or _address_refused(host):
        raise WebhookUrlRefused(
            "Webhook URLs must not point at link-local, metadata or (unless allowed) private "
            "addresses."
        )
    if host == "localhost" and not settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS:
        raise WebhookUrlRefused("Webhook URLs must not point at this host.")
    if resolve:
        try:
            infos = socket.getaddrinfo(host, parts.port or None, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError) as exc:
            raise WebhookUrlRefused(f"Host {host!r} does not resolve.") from exc
        if any(_address_refused(str(info[4][0])) for info in infos):
            raise WebhookUrlRefused("Webhook host resolves to a link-local or metadata address.")
    return url


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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect could lead anywhere, the metadata service included: treat it as an answer.
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


@dataclass(frozen=True)
class SendResult:
    ok: bool
    status_code: int | None
    error: str


def send(*, url: str, body: bytes, headers: dict[str, str], timeout: float) -> SendResult:
    """One POST with a hard timeout; any answer but 2xx, or none, is a failure."""
    try:
        url_check(url, resolve=True)
    except WebhookUrlRefused as exc:
        return SendResult(False, None, str(exc))
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with _opener.open(request, timeout=timeout) as response:
            response.read(65536)
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return SendResult(False, exc.code, f"HTTP {exc.code}")
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        return SendResult(False, None, f"{type(exc).__name__}: {reason}"[:500])
    return SendResult(200 <= status < 300, status, "" if 200 <= status < 300 else f"HTTP {status}")
