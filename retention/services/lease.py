"""The enforcement lease: one row per name, taken by a conditional UPDATE, so two
enforcers can never both hold it; a run renews it with every chunk."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q

from retention.errors import LeaseLost
from retention.models import Lease

ENFORCE_LEASE = "retention.enforce"


def lease_ttl() -> timedelta:
    return timedelta(seconds=settings.RETENTION_LEASE_SECONDS)


def lease_acquire(*, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Takes the lease if it is free or expired: one conditional UPDATE, atomic on any
    database, so two enforcers can never both win."""
    Lease.objects.bulk_create([Lease(name=name)], ignore_conflicts=True)
    taken = (
        Lease.objects.filter(name=name)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__lte=now) | Q(holder=holder))
        .update(holder=holder, expires_at=now + ttl)
    )
    return taken == 1


def lease_renew(*, name: str, holder: str, now: datetime, ttl: timedelta) -> None:
    if not Lease.objects.filter(name=name, holder=holder).update(expires_at=now + ttl):
        raise LeaseLost(name)


def lease_release(*, name: str, holder: str) -> None:
    Lease.objects.filter(name=name, holder=holder).update(holder="", expires_at=None)
