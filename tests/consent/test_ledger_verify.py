"""The ledger's chain verifies, and every tampering done behind the trigger's back is found."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection

from consent import ledger
from consent.ledger.purge import subject_history_purge
from consent.ledger.verify import ledger_verify
from consent.models import ConsentEvent, Subject, SubjectTombstone
from tests import factories

pytestmark = pytest.mark.django_db


def tamper(sql: str, params: list | None = None) -> None:
    """As the table owner: switch the append-only trigger off, change rows, switch it on."""
    with connection.cursor() as cursor:
        # Django's foreign keys are deferred; ALTER TABLE wants no pending trigger events.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            "ALTER TABLE consent_consentevent DISABLE TRIGGER consent_ledger_append_only"
        )
        cursor.execute(sql, params or [])
        cursor.execute("ALTER TABLE consent_consentevent ENABLE TRIGGER consent_ledger_append_only")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def three_events(subject_id: str = "alice") -> list[ConsentEvent]:
    factories.record(subject_id, analytics=True)
    factories.record(subject_id, ml_training=True)
    factories.record(subject_id, analytics=False)
    return list(ConsentEvent.objects.filter(subject__key__isnull=False).order_by("seq"))


def kinds(report) -> set[tuple[str, int | None]]:
    return {(b.kind, b.seq) for b in report.breaks}


def test_intact_chains_verify(purposes):
    three_events("alice")
    three_events("bob")
    report = ledger_verify()
    assert report.ok and report.subjects == 2 and report.events == 6


def test_changed_field_is_found_by_raw_sql_behind_the_trigger(purposes):
    events = three_events()
    tamper("UPDATE consent_consentevent SET action = 'granted' WHERE id = %s", [events[2].pk])
    report = ledger_verify()
    assert kinds(report) == {("hash_mismatch", 3)}
    assert report.breaks[0].event_id == str(events[2].pk)


def test_rehashed_event_breaks_the_link_to_the_next(purposes):
    events = three_events()
    tamper(
        "UPDATE consent_consentevent SET notice_version = 9, hash = %s WHERE id = %s",
        ["f" * 64, events[1].pk],
    )
    assert kinds(ledger_verify()) == {("hash_mismatch", 2), ("broken_link", 3)}


def test_deleted_middle_event_is_found(purposes):
    events = three_events()
    tamper("DELETE FROM consent_consentevent WHERE id = %s", [events[1].pk])
    assert kinds(ledger_verify()) == {("seq_gap", 3), ("broken_link", 3)}


def test_deleted_last_event_is_found_by_the_subject_head(purposes):
    events = three_events()
    tamper("DELETE FROM consent_consentevent WHERE id = %s", [events[2].pk])
    assert kinds(ledger_verify()) == {("head_mismatch", None)}


def test_deleted_first_event_without_tombstone_is_found(purposes):
    events = three_events()
    tamper("DELETE FROM consent_consentevent WHERE id = %s", [events[0].pk])
    assert ("missing_start", 2) in kinds(ledger_verify())


def test_changed_proof_context_is_found_and_deleted_context_is_fine(purposes):
    events = three_events()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE consent_consentcontext SET page = 'forged' WHERE receipt_id = %s",
            [events[0].receipt_id],
        )
        cursor.execute(
            "DELETE FROM consent_consentcontext WHERE receipt_id = %s", [events[1].receipt_id]
        )
    assert kinds(ledger_verify()) == {("context_mismatch", 1)}


def test_purged_history_then_new_events_verify_from_the_tombstone(purposes):
    three_events()
    subject = Subject.objects.get()
    tombstone = subject_history_purge(subject=subject, reason="erasure")
    assert ledger_verify().ok
    factories.record("alice", analytics=True)
    first = ConsentEvent.objects.get()
    assert (first.seq, first.prev_hash) == (tombstone.last_seq + 1, tombstone.final_chain_hash)
    assert ledger_verify().ok


def test_forged_tombstone_does_not_start_a_chain(purposes):
    three_events()
    subject_history_purge(subject=Subject.objects.get(), reason="erasure")
    factories.record("alice", analytics=True)
    SubjectTombstone.objects.update(final_chain_hash="0" * 64)
    assert ("tombstone_mismatch", 4) in kinds(ledger_verify())


def test_genesis_is_the_empty_hash(purposes):
    events = three_events()
    assert events[0].prev_hash == ledger.GENESIS and events[0].seq == 1


def test_verify_ledger_command_names_every_break_and_fails(purposes):
    events = three_events()
    out = StringIO()
    call_command("verify_ledger", stdout=out)
    assert "0 breaks" in out.getvalue()
    tamper("UPDATE consent_consentevent SET language = 'xx' WHERE id = %s", [events[0].pk])
    out = StringIO()
    with pytest.raises(CommandError, match="1 breaks"):
        call_command("verify_ledger", "--json", stdout=out)
    assert str(events[0].pk) in out.getvalue() and "hash_mismatch" in out.getvalue()


def test_admin_action_names_breaks(purposes, client, staff_client):
    events = three_events()
    tamper("UPDATE consent_consentevent SET source = 'admin' WHERE id = %s", [events[0].pk])
    staff_client(User.objects.create_superuser("dpo", "d@example.com", "pw"), client)
    response = client.post(
        "/admin/consent/subject/",
        {"action": "verify_chain", "_selected_action": [Subject.objects.get().pk]},
        follow=True,
    )
    text = response.content.decode()
    assert "Chain break" in text and "hash_mismatch" in text and str(events[0].pk) in text
