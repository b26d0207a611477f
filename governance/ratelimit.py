"""Fixed-window rate limits in the cache (Redis in production).

When the cache is down the service keeps answering without limits and logs that it is:
availability of consent recording matters more than enforcing a quota.
"""

from __future__ import annotations

import logging
import time

from django.core.cache import cache

logger = logging.getLogger(__name__)

# The clock, a name of its own so tests can freeze it.
_clock = time.time


def rate_limit_hit(*, bucket: str, limit: int, window_seconds: int = 60) -> int | None:
    """Counts one request in `bucket`; returns seconds to wait when over `limit`, else None."""
    now = _clock()
    window = int(now // window_seconds)
    key = f"rl:{bucket}:{window}"
    try:
        cache.add(key, 0, timeout=window_seconds + 1)
        count = cache.incr(key)
    except Exception as exc:  # any cache failure: answer without limits, loudly
        logger.warning("rate limiting disabled: cache unavailable (%s)", type(exc).__name__)
        return None
    if count > limit:
        return max(1, int(window_seconds - (now % window_seconds)) + 1)
    return None
