"""The `shown` counter: banner configuration answers that asked the person, per property and
UTC day, for the consent-rates report.

The banner's configuration is a hot path, so with Redis a count is one HINCRBY (one round
trip) on a hash per day, and a beat task copies the hashes into BannerShown. The copy writes
the larger of Redis's figure and the stored one, so running it twice, or after Redis lost a
day's hash, never counts anything twice nor goes backwards. Without Redis (the embedded
stack) each web process counts in memory and adds its counts to BannerShown itself every few
seconds: web, worker and beat are separate processes there, so the beat task could not see
them. The implementation is chosen once, by whether REDIS_URL is set.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
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


def _expiry(day: date) -> datetime:
    """When a day's hash goes: after the last flush that still copies it."""
    return datetime.combine(day + timedelta(days=KEEP_DAYS + 1), clock_time.min, tzinfo=UTC)


class ShownCounter(Protocol):
    def count(self, *, property_id: int, day: date) -> None: ...

    def flush(self, *, today: date) -> int: ...


class RedisShownCounter:
    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def count(self, *, property_id: int, day: date) -> None:
        key = _KEY.format(day=day.isoformat())
        try:
            # One round trip; the day's first count (and every flush) sets the expiry.
            if self.client.hincrby(key, str(property_id), 1) == 1:
                self.client.expireat(key, _expiry(day))
        except redis.RedisError as exc:  # the banner answers regardless; the count is lost
            logger.warning("banner shown not counted: cache unavailable (%s)", type(exc).__name__)

    def flush(self, *, today: date) -> int:
        days = [today - timedelta(days=n) for n in range(KEEP_DAYS)]
        pipe = self.client.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(_KEY.format(day=day.isoformat()))
            pipe.expireat(_KEY.format(day=day.isoformat()), _expiry(day))
        found = pipe.execute()[::2]
        counted = {
            (day, int(pk)): int(n)
            for day, hash_ in zip(days, found, strict=True)
            for pk, n in hash_.items()
        }
        return _store_at_least(counted)


class LocalShownCounter:
    """Counts in this process and adds them to BannerShown at most every `every` seconds,
    from the request that finds the interval past (and at exit). Without Redis, the web,
    worker and beat are separate processes, so the beat task cannot reach these counts; and
    an UPDATE per answer would queue every banner request on the day's row lock."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self.lock = threading.Lock()
        self.pending: Counter[tuple[date, int]] = Counter()
        self.written_at = time.monotonic()
        atexit.register(self.write)

    def count(self, *, property_id: int, day: date) -> None:
        with self.lock:
            self.pending[(day, property_id)] += 1
            due = time.monotonic() - self.written_at >= self.every
        if due:
            self.write()

    def write(self) -> int:
        """Adds this process's counts to the stored ones; returns rows written."""
        with self.lock:
            pending, self.pending = self.pending, Counter()
            self.written_at = time.monotonic()
        for (day, property_id), n in sorted(pending.items()):
            _add(day=day, property_id=property_id, n=n)
        return len(pending)

    def flush(self, *, today: date) -> int:
        return 0  # the beat's process holds no counts of the web's


def _add(*, day: date, property_id: int, n: int) -> None:
    rows = BannerShown.objects.filter(day=day, property_id=property_id)
    with transaction.atomic():
        if rows.update(count=F("count") + n):
            return
        try:
            with transaction.atomic():
                BannerShown.objects.create(day=day, property_id=property_id, count=n)
        except IntegrityError:  # created meanwhile by another process
            rows.update(count=F("count") + n)


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
    return LocalShownCounter()


def banner_shown_count(*, property_id: int, day: date | None = None) -> None:
    """Counts one banner configuration answer that asked the person."""
    shown_counter().count(property_id=property_id, day=day or _today())


def banner_shown_flush(*, today: date | None = None) -> int:
    """Copies the counts of the last KEEP_DAYS days into BannerShown; idempotent."""
    return shown_counter().flush(today=today or _today())
