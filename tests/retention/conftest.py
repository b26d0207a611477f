"""Fixtures of the retention tests: old data made at injected instants, the external table."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from consent import ledger
from consent.ledger.verify import ledger_verify
from consent.models import ConsentEvent, Subject, SubjectTombstone
from retention.models import RetentionPolicy


@pytest.fixture
def now() -> datetime:
    return timezone.now()


@pytest.fixture
def no_accountability_minimum(settings: Any) -> None:
    """For tests of the purge mechanics with short periods: no minimum in the settings nor in
    the database's own floor (audit_purge_before), both undone with the test's transaction."""
    from governance.audit import audit_floor_sync

    settings.RETENTION_MINIMUM_ACCOUNTABILITY_DAYS = 0
    audit_floor_sync()


def policy(target: str, *, days: float, **extra: Any) -> RetentionPolicy:
    return RetentionPolicy.objects.create(
        name=f"test {target} {days} {extra.get('action', 'delete')} {len(extra)}",
        target=target,
        keep_for=timedelta(days=days),
        **extra,
    )


ML_FEATURES_DDL = """
CREATE TABLE IF NOT EXISTS ml_features (
    id bigserial PRIMARY KEY,
    subject_key varchar(64) NOT NULL,
    created_at timestamptz NOT NULL,
    features jsonb NOT NULL DEFAULT '{}'::jsonb
)
"""


@pytest.fixture(scope="session", autouse=True)
def _ml_features_table(request: Any) -> None:
    """The external table exists for the whole session, as it would in the feature store
    (created before any test's transaction begins, so no rollback removes it)."""
    if not any(item.get_closest_marker("django_db") for item in request.session.items):
        return
    request.getfixturevalue("django_db_setup")
    with (
        request.getfixturevalue("django_db_blocker").unblock(),
        connections["features"].cursor() as cursor,
    ):
        cursor.execute(ML_FEATURES_DDL)
        cursor.execute("TRUNCATE ml_features")


@pytest.fixture
def ml_features() -> Any:
    """Inserts rows into the external ML feature table, in the second PostgreSQL database."""

    def insert(subject_key: str, created_at: datetime, n: int = 1) -> None:
        with connections["features"].cursor() as cursor:
            for _ in range(n):
                cursor.execute(
                    "INSERT INTO ml_features (subject_key, created_at, features) "
                    "VALUES (%s, %s, '{\"f\": 1}')",
                    [subject_key, created_at],
                )

    return insert


def ml_rows(subject_key: str | None = None) -> int:
    with connections["features"].cursor() as cursor:
        if subject_key is None:
            cursor.execute("SELECT count(*) FROM ml_features")
        else:
            cursor.execute("SELECT count(*) FROM ml_features WHERE subject_key = %s", [subject_key])
        return int(cursor.fetchone()[0])


def chain_verifies(subject: Subject) -> bool:
    """The ledger chain check: every event's hash recomputes and links to the previous one;
    a purged history's tombstone is the one checkpoint accepted as the start."""
    subject.refresh_from_db()
    tomb = (
        SubjectTombstone.objects.filter(subject_key=subject.key, namespace=subject.namespace)
        .order_by("-created_at", "-pk")
        .first()
    )
    events = list(ConsentEvent.objects.filter(subject=subject).select_related("purpose"))
    prev = ""
    if events and events[0].seq > 1:
        if tomb is None or tomb.last_seq != events[0].seq - 1:
            return False
        prev = tomb.final_chain_hash
    for e in events:
        if e.prev_hash != prev:
            return False
        recomputed = ledger.event_hash(
            event_id=str(e.id),
            subject_key=subject.key,
            seq=e.seq,
            purpose_key=e.purpose.key if e.purpose is not None else "",
            notice_version=e.notice_version,
            language=e.language,
            action=e.action,
            effective_at=e.effective_at,
            recorded_at=e.recorded_at,
            expires_at=e.expires_at,
            source=e.source,
            indication_method=e.indication_method,
            given_by=e.given_by,
            actor_type=e.actor_type,
            actor_id=e.actor_id,
            receipt_id=str(e.receipt_id),
            context_digest=e.context_digest,
            prev_hash=e.prev_hash,
        )
        if recomputed != e.hash:
            return False
        prev = e.hash
    head = events[-1].hash if events else (tomb.final_chain_hash if tomb else "")
    # And the service's own check (trust issue) agrees.
    return head == subject.chain_head and ledger_verify(subject_ids=[subject.pk]).ok
