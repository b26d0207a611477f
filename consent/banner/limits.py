"""The banner endpoints' rate limit per client address, counted once per request.

Counted before the key is looked at, so floods with bad keys are limited too. The lean path
(governance.api.hot) counts it first and may hand the request to the DRF view, whose
`initial` asks again: the request keeps its first answer, so it is counted once.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from governance.audit import hash_ip
from governance.net import client_ip
from governance.ratelimit import rate_limit_hit

_WAIT = "consent_banner_rate_limit_wait"


def banner_rate_limit_wait(request: Any) -> float | None:
    """Seconds to wait when the request's address is over the banner limit, else None."""
    raw = getattr(request, "_request", request)  # a DRF Request's HttpRequest
    if hasattr(raw, _WAIT):
        wait: float | None = getattr(raw, _WAIT)
        return wait
    # The bucket names a keyed hash of the address: no plain IP is kept, even briefly.
    wait = rate_limit_hit(
        bucket=f"banner:{hash_ip(client_ip(raw))[:32]}",
        limit=settings.BANNER_RATE_LIMIT_PER_MINUTE,
        window_seconds=60,
    )
    setattr(raw, _WAIT, wait)
    return wait


def banner_rate_limit_allows(request: Any) -> bool:
    return banner_rate_limit_wait(request) is None
