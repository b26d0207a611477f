"""Reads of restriction periods, in the API's shape."""

from __future__ import annotations

from typing import Any

from consent import identity
from consent.models import Restriction, Subject
from governance import crypto
from governance.api.common import iso


def restriction_aad(period: Restriction) -> bytes:
    """The associated data of a period's reason: its own id, which no re-keying changes."""
    return f"restriction:{period.pk}".encode()


def restriction_reason(period: Restriction) -> str:
    return crypto.decrypt(bytes(period.reason_encrypted), aad=restriction_aad(period)).decode()


def restriction_periods(*, subject: Subject | None) -> list[dict[str, Any]]:
    """The subject's periods, oldest first, each {"started_at", "ended_at", "reason"} with the
    reason decrypted (an unknown subject has none)."""
    if subject is None:
        return []
    return [
        {
            "started_at": iso(p.started_at),
            "ended_at": iso(p.ended_at),
            "reason": restriction_reason(p),
        }
        for p in Restriction.objects.filter(subject=subject).order_by("started_at")
    ]


def restriction_open(*, subject: Subject) -> Restriction | None:
    return Restriction.objects.filter(subject=subject, ended_at__isnull=True).first()


def restriction_periods_for(*, identifier: str, namespace: str) -> list[dict[str, Any]]:
    """The periods of the subject this identifier names (none for an unknown one)."""
    identity.validate_identifier(identifier)
    subject = Subject.objects.filter(
        namespace=namespace, key=identity.subject_key(identifier)
    ).first()
    return restriction_periods(subject=subject)
