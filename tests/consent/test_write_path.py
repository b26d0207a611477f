"""The consent write on PostgreSQL: four prepared statements, the same rows as the ORM path.

See docs/decisions/0007. SQLite's ORM path is exercised by tests/test_embedded_stack.py.
"""

from __future__ import annotations

import pytest
from django.db import connection

from consent import identity
from consent.ledger.verify import ledger_verify
from consent.models import ConsentContext, ConsentEvent, ConsentState, Subject
from governance.models import AuditEvent, OutboxEvent
from tests import factories

pytestmark = pytest.mark.django_db


def test_consent_write_runs_as_prepared_statements(purposes):
    factories.record("prepared-1", analytics=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any("INSERT INTO consent_subject" in s for s in prepared)
    assert any("jsonb_populate_recordset" in s for s in prepared)


def test_one_write_stores_every_row_with_the_values_it_hashed(purposes):
    result = factories.record("rows-1", analytics=True, ml_training=False)
    subject = Subject.objects.get(key=identity.subject_key("rows-1"))
    assert identity.decrypt_identifier(subject.identifier_encrypted, key=subject.key) == "rows-1"
    events = list(ConsentEvent.objects.filter(subject=subject).order_by("seq"))
    assert [(e.seq, e.purpose.key, e.action) for e in events] == [
        (1, "analytics", "granted"),
        (2, "ml_training", "refused"),
    ]
    assert [e.hash for e in events] == [e.hash for e in result.events]
    assert events[1].prev_hash == events[0].hash and subject.chain_head == events[1].hash
    assert subject.last_seq == 2
    report = ledger_verify(subject_ids=[subject.pk])  # hashes recomputed from stored rows
    assert report.events == 2 and not report.breaks
    states = {s.purpose.key: s for s in ConsentState.objects.filter(subject=subject)}
    assert states["analytics"].status == "granted" and states["analytics"].expires_at
    assert states["ml_training"].event_id == events[1].id
    assert ConsentContext.objects.filter(receipt_id=result.receipt_id).count() == 1
    outbox = OutboxEvent.objects.filter(subject_key=subject.key).order_by("seq")
    assert [(o.seq, o.event_type) for o in outbox] == [
        (1, "consent.granted"),
        (2, "consent.refused"),
    ]
    assert outbox[0].payload["event_id"] == str(events[0].id)
    audit = AuditEvent.objects.get(target_id=str(result.receipt_id))
    assert audit.detail["events"] == [["analytics", "granted"], ["ml_training", "refused"]]


def test_later_writes_continue_the_chain_and_the_outbox_sequence(purposes):
    factories.record("rows-2", analytics=True)
    factories.record("rows-2", analytics=False)
    key = identity.subject_key("rows-2")
    assert list(
        ConsentEvent.objects.filter(subject__key=key)
        .order_by("seq")
        .values_list("action", flat=True)
    ) == ["granted", "withdrawn"]
    assert list(
        OutboxEvent.objects.filter(subject_key=key).order_by("seq").values_list("seq", flat=True)
    ) == [1, 2]
    assert ConsentState.objects.get(subject__key=key).status == "withdrawn"
