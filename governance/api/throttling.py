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


class ClientAndIpRateThrottle(BaseThrottle):
    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        client = request.auth
        if isinstance(client, ApiClient) and client.rate_limit_per_minute:
            wait = rate_limit_hit(
                bucket=f"client:{client.pk}", limit=client.rate_limit_per_minute, window_seconds=60
            )
            if wait is not None:
                self._wait = wait
                return False
        ip_limit = getattr(view, "ip_rate_limit_per_minute", None)
        if ip_limit:
            address = hash_ip(client_ip(request))[:32] or "unknown"
            wait = rate_limit_hit(
                bucket=f"ip:{type(view).__name__}:{address}", limit=ip_limit, window_seconds=60
            )
            if wait is not None:
                self._wait = wait
                return False
        return True

    def wait(self) -> float | None:
        return self._wait
