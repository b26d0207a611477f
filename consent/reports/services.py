"""The `shown` counter: banner configuration answers that asked the person, per property and
UTC day, for the consent-rates report.

The banner's configuration is a hot path, so with Redis a count is one HINCRBY (with its
EXPIRE, pipelined: one round trip) on a hash per day, and a beat task copies the hashes into
BannerShown. The copy writes the larger of Redis's figure and the stored one, so running it
twice, or after Redis lost a day's hash, never counts anything twice nor goes backwards.
Without Redis (the embedded stack: web, worker and beat are separate processes, so an
in-process counter would be invisible to the task) each count is one UPDATE of the day's row.
The implementation is chosen once, by whether REDIS_URL is set.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Protocol

import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F

from consent.models import BannerShown, Property

logger = logging.getLogger(__name__)

# Days a Redis hash outlives its day: the flush copies this many days back, so a beat
# stopped for less than this loses nothing.
KEEP_DAYS = 8
_KEY = "consent:banner_shown:{day}"


def _today() -> date:
    return datetime.now(UTC).date()


class ShownCounter(Protocol):
    def count(self, *, property_id: int, day: date) -> None: ...

    def flush(self, *, today: date) -> int: ...


class RedisShownCounter:
    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def count(self, *, property_id: int, day: date) -> None:
        key = _KEY.format(day=day.isoformat())
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hincrby(key, str(property_id), 1)
            pipe.expire(key, timedelta(days=KEEP_DAYS))
            pipe.execute()
        except redis.RedisError as exc:  # the banner answers regardless; the count is lost
            logger.warning("banner shown not counted: cache unavailable (%s)", type(exc).__name__)

    def flush(self, *, today: date) -> int:
        days = [today - timedelta(days=n) for n in range(KEEP_DAYS)]
        pipe = self.client.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(_KEY.format(day=day.isoformat()))
        counted = {
            (day, int(pk)): int(n)
            for day, found in zip(days, pipe.execute(), strict=True)
            for pk, n in found.items()
        }
        return _store_at_least(counted)


class DatabaseShownCounter:
    def count(self, *, property_id: int, day: date) -> None:
        rows = BannerShown.objects.filter(day=day, property_id=property_id)
        with transaction.atomic():
            if rows.update(count=F("count") + 1):
                return
            try:
                with transaction.atomic():
                    BannerShown.objects.create(day=day, property_id=property_id, count=1)
            except IntegrityError:  # created meanwhile by another request
                rows.update(count=F("count") + 1)

    def flush(self, *, today: date) -> int:
        return 0  # counted in place


def _store_at_least(counted: dict[tuple[date, int], int]) -> int:
    """Stores each (day, property) count unless a larger one is stored; returns rows written."""
    if not counted:
        return 0
    live = set(
        Property.objects.filter(pk__in={pk for _, pk in counted}).values_list("pk", flat=True)
    )
    with transaction.atomic():
        stored = {
            (row.day, row.property_id): row.count
            for row in BannerShown.objects.filter(day__in={day for day, _ in counted})
        }
        rows = [
            BannerShown(day=day, property_id=pk, count=n)
            for (day, pk), n in sorted(counted.items())
            if pk in live and n > stored.get((day, pk), 0)
        ]
        BannerShown.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["day", "property"],
            update_fields=["count"],
        )
    return len(rows)


@lru_cache(maxsize=1)
def shown_counter() -> ShownCounter:
    if settings.REDIS_URL:
        return RedisShownCounter(settings.REDIS_URL)
    return DatabaseShownCounter()


def banner_shown_count(*, property_id: int, day: date | None = None) -> None:
    """Counts one banner configuration answer that asked the person."""
    shown_counter().count(property_id=property_id, day=day or _today())


def banner_shown_flush(*, today: date | None = None) -> int:
    """Copies the counts of the last KEEP_DAYS days into BannerShown; idempotent."""
    return shown_counter().flush(today=today or _today())
