"""Rate limits for every API view: per API client, and per client IP where a view asks.

A client's `rate_limit_per_minute` is shared by all its keys (a rotation must not double
it). A view that sets `ip_rate_limit_per_minute` is also limited per client address, read
through TRUSTED_PROXY_COUNT proxies and hashed before it becomes a Redis key. Over a limit:
429 in the common error shape with Retry-After. With Redis down, rate_limit_hit answers
None and logs: the service keeps answering, unlimited.
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from governance.audit import hash_ip
from governance.models import ApiClient
from governance.net import client_ip
from governance.ratelimit import rate_limit_hit

# Set on a request whose limits were already counted (by the lean path of governance.api.hot
# before it handed the request to the DRF view): one request is counted once.
COUNTED = "governance_rate_limits_counted"


def rate_limit_wait(client: Any, view: Any, request: Any) -> float | None:
    """Counts the request against its client's limit and, where the view (instance or
    class) sets one, its address's; seconds to wait when over a limit, else None."""
    if isinstance(client, ApiClient) and client.rate_limit_per_minute:
        wait = rate_limit_hit(
            bucket=f"client:{client.pk}", limit=client.rate_limit_per_minute, window_seconds=60
        )
        if wait is not None:
            return wait
    ip_limit = getattr(view, "ip_rate_limit_per_minute", None)
    if ip_limit:
        name = view.__name__ if isinstance(view, type) else type(view).__name__
        address = hash_ip(client_ip(request))[:32] or "unknown"
        return rate_limit_hit(bucket=f"ip:{name}:{address}", limit=ip_limit, window_seconds=60)
    return None


class ClientAndIpRateThrottle(BaseThrottle):
    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        if getattr(request._request, COUNTED, False):
            return True
        self._wait = rate_limit_wait(request.auth, view, request)
        return self._wait is None

    def wait(self) -> float | None:
        return self._wait
