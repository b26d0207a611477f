"""The ledger: append-only in the database itself, chained, in step with the state."""

from __future__ import annotations

import itertools
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.db import DatabaseError, connection, transaction

from consent import identity, ledger, services
from consent.errors import UnknownPurpose
from consent.ledger.purge import subject_history_purge
from consent.models import ConsentEvent, ConsentState, Subject, SubjectTombstone
from governance.models import AuditEvent, OutboxEvent
from tests import factories

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def test_raw_sql_update_on_the_ledger_is_refused(purposes):
    factories.record("u1", analytics=True)
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE consent_consentevent SET action = 'refused'")
    assert ConsentEvent.objects.get().action == "granted"


def test_raw_sql_delete_on_the_ledger_is_refused(purposes):
    factories.record("u1", analytics=True)
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM consent_consentevent")
    assert ConsentEvent.objects.count() == 1


def test_orm_update_and_delete_are_refused_too(purposes):
    factories.record("u1", analytics=True)
    with pytest.raises(DatabaseError), transaction.atomic():
        ConsentEvent.objects.update(action="refused")
    with pytest.raises(DatabaseError), transaction.atomic():
        ConsentEvent.objects.all().delete()
    assert ConsentEvent.objects.filter(action="granted").count() == 1


def test_guarded_purge_path_removes_a_whole_history_and_leaves_a_tombstone(purposes):
    factories.record("u1", analytics=True, ml_training=False)
    factories.record("u1", analytics=False)
    factories.record("u2", analytics=True)
    subject = Subject.objects.get(key=identity.subject_key("u1"))
    head = subject.chain_head
    tombstone = subject_history_purge(subject=subject, reason="erasure")
    assert not ConsentEvent.objects.filter(subject=subject).exists()
    assert not ConsentState.objects.filter(subject=subject).exists()
    assert ConsentEvent.objects.count() == 1  # u2 untouched
    assert tombstone.final_chain_hash == head and tombstone.last_seq == 3
    assert tombstone.removed["consent_events"] == 3
    assert SubjectTombstone.objects.count() == 1
    # The guard does not outlive the purge: plain deletes are refused again.
    with pytest.raises(DatabaseError), transaction.atomic():
        ConsentEvent.objects.all().delete()


def test_a_new_grant_after_a_purge_continues_from_the_tombstone(purposes):
    factories.record("u1", analytics=True)
    subject = Subject.objects.get(key=identity.subject_key("u1"))
    tombstone = subject_history_purge(subject=subject, reason="erasure")
    event = factories.record("u1", analytics=True).events[0]
    assert event.seq == tombstone.last_seq + 1
    assert event.prev_hash == tombstone.final_chain_hash


def test_each_event_hashes_its_fields_and_links_to_the_previous_one(purposes):
    factories.record("u1", analytics=True)
    factories.record("u1", analytics=False, ml_training=True)
    events = list(ConsentEvent.objects.select_related("subject", "purpose").order_by("seq"))
    assert [e.seq for e in events] == [1, 2, 3]
    previous = ""
    for e in events:
        assert e.prev_hash == previous
        recomputed = ledger.event_hash(
            event_id=str(e.id),
            subject_key=e.subject.key,
            seq=e.seq,
            purpose_key=e.purpose.key,
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
        assert recomputed == e.hash
        previous = e.hash
    assert events[-1].subject.chain_head == previous


def test_consent_write_appends_outbox_and_audit_rows(purposes):
    result = factories.record("u1", analytics=True, ml_training=False)
    outbox = list(OutboxEvent.objects.order_by("seq"))
    assert [o.event_type for o in outbox] == ["consent.granted", "consent.refused"]
    assert [o.seq for o in outbox] == [1, 2]
    assert all(o.subject_key == result.subject.key for o in outbox)
    audit = AuditEvent.objects.get()
    assert audit.action == "consent.record" and audit.target_id == str(result.receipt_id)


def test_a_failed_write_leaves_no_event_state_outbox_or_audit(purposes):
    with pytest.raises(UnknownPurpose):
        services.consent_record(
            subject_id="u1",
            decisions=[
                services.DecisionInput("analytics", True),
                services.DecisionInput("x", True),
            ],
            actor=services.Actor.system("test"),
        )
    assert not ConsentEvent.objects.exists() and not ConsentState.objects.exists()
    assert not OutboxEvent.objects.exists() and not AuditEvent.objects.exists()


def test_subject_mark_erased_destroys_the_identifier(purposes):
    result = factories.record("u1", analytics=True)
    erased = services.subject_mark_erased(subject=result.subject)
    assert erased.identifier_encrypted is None and erased.erased_at is not None
    assert Subject.objects.get(pk=erased.pk).identifier_encrypted is None


def test_identifier_is_stored_encrypted_and_decrypts(purposes):
    result = factories.record("alice@example.com", analytics=True)
    stored = Subject.objects.get(pk=result.subject.pk)
    assert b"alice" not in bytes(stored.identifier_encrypted)
    assert stored.key == identity.subject_key("alice@example.com")
    assert identity.decrypt_identifier(stored.identifier_encrypted, key=stored.key) == (
        "alice@example.com"
    )


@pytest.mark.django_db(transaction=True)
def test_state_stays_in_step_with_the_ledger_under_concurrent_writes():
    factories.seed_purposes()
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        try:
            start.wait()
            for i in range(10):
                factories.record("shared-subject", analytics=(n + i) % 2 == 0)
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    subject = Subject.objects.get(key=identity.subject_key("shared-subject"))
    events = list(ConsentEvent.objects.filter(subject=subject).order_by("seq"))
    assert [e.seq for e in events] == list(range(1, 81))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    state = ConsentState.objects.get(subject=subject)
    assert state.event_id == events[-1].id and state.status == events[-1].action
    assert subject.last_seq == 80 and subject.chain_head == events[-1].hash


def test_sqlite_trigger_refuses_update_and_delete_too(tmp_path):
    db = tmp_path / "ledger.sqlite3"
    env = {
        "PATH": "/usr/bin:/bin",
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{db}",
        "VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "governance.settings",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    conn = sqlite3.connect(db)
    conn.execute(
        "INSERT INTO consent_consentevent (id, subject_id, seq, purpose_id, notice_version, "
        "language, action, effective_at, recorded_at, source, indication_method, given_by, "
        "actor_type, actor_id, actor_label, receipt_id, context_digest, prev_hash, hash) "
        "VALUES ('e1', 1, 1, 1, 1, 'en', 'granted', '2026-01-01', '2026-01-01', 'api', 'api', "
        "'subject', 'system', '', '', 'r1', '', '', 'h')"
    )
    conn.commit()
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE consent_consentevent SET action = 'refused'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM consent_consentevent")
    conn.execute("INSERT INTO consent_ledgerpurgeguard (reason) VALUES ('test')")
    conn.execute("DELETE FROM consent_consentevent")
    assert conn.execute("SELECT count(*) FROM consent_consentevent").fetchone() == (0,)
    conn.rollback()
    conn.close()
