"""The client's address, read through a configured number of trusted proxies."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from governance.audit import hash_ip


def client_ip(request: Any) -> str:
    """With N trusted proxies, the client is the N-th address from the right of
    X-Forwarded-For; with none, REMOTE_ADDR. Addresses further left are client-controlled."""
    remote = request.META.get("REMOTE_ADDR", "") or ""
    hops = int(getattr(settings, "TRUSTED_PROXY_COUNT", 0))
    if hops <= 0:
        return remote
    forwarded = [
        part.strip()
        for part in (request.META.get("HTTP_X_FORWARDED_FOR", "") or "").split(",")
        if part.strip()
    ]
    if len(forwarded) >= hops:
        return forwarded[-hops]
    return remote


def client_ip_pseudonym(request: Any) -> str | None:
    """The client's address as django-axes stores it (AXES_CLIENT_IP_CALLABLE): the audit's
    keyed hash of `client_ip`, cut to 120 bits and written as a unique-local IPv6 address.

    Axes keeps the address in a GenericIPAddressField (PostgreSQL `inet`), so the hash has
    to look like an address; the fd00::/8 prefix marks it as one no client can have. Failed
    sign-ins are still told apart by address, and the stored rows hold no raw IP. The hex
    digits are the audit's `ip_hash` prefix, so a lockout can be matched to audit rows.
    """
    digest = hash_ip(client_ip(request))
    if not digest:
        return None
    hexdigits = "fd" + digest[:30]
    return ":".join(hexdigits[i : i + 4] for i in range(0, 32, 4))
