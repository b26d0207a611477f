"""Least privilege: the role the app runs as cannot touch the ledger's trigger or table."""

from __future__ import annotations

import uuid
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from consent.models import ConsentEvent
from governance.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def app_role(purposes):
    """A role made by the command, inside the test's transaction (roles roll back too)."""
    role = f"gov_app_test_{uuid.uuid4().hex[:8]}"
    call_command("create_app_role", "--role", role, stdout=StringIO())
    with connection.cursor() as cursor:
        cursor.execute(f'SET ROLE "{role}"')
    yield role
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")


def refused(sql: str) -> str:
    with pytest.raises(DatabaseError) as info, transaction.atomic(), connection.cursor() as cur:
        cur.execute(sql)
    return str(info.value)


def test_app_role_cannot_disable_drop_or_alter_the_ledger_trigger(app_role):
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        assert cursor.fetchone()[0] == app_role
    for statement in (
        "ALTER TABLE consent_consentevent DISABLE TRIGGER consent_ledger_append_only",
        "ALTER TABLE consent_consentevent DISABLE TRIGGER ALL",
        "DROP TRIGGER consent_ledger_append_only ON consent_consentevent",
        "DROP TABLE consent_consentevent",
        "TRUNCATE consent_consentevent",
        "ALTER TABLE consent_consentevent ADD COLUMN forged text",
        "CREATE OR REPLACE FUNCTION consent_ledger_guard() RETURNS trigger AS "
        "$$ BEGIN RETURN OLD; END; $$ LANGUAGE plpgsql",
        "ALTER TABLE governance_auditevent DISABLE TRIGGER governance_audit_append_only",
        "SET session_replication_role = replica",
    ):
        message = refused(statement)
        assert "must be owner" in message or "permission denied" in message, statement


def test_app_role_can_do_the_apps_work_and_the_trigger_still_refuses_updates(app_role):
    result = factories.record("alice", analytics=True)
    assert ConsentEvent.objects.filter(receipt_id=result.receipt_id).exists()
    assert AuditEvent.objects.filter(action="consent.record").exists()
    assert "append-only" in refused("UPDATE consent_consentevent SET action = 'refused'")
    assert "append-only" in refused("DELETE FROM consent_consentevent")


def test_owner_can_still_disable_the_trigger():
    # The contrast: the owner (migrations) can; see the chain-break tests that rely on it.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            "ALTER TABLE consent_consentevent DISABLE TRIGGER consent_ledger_append_only"
        )
        cursor.execute("ALTER TABLE consent_consentevent ENABLE TRIGGER consent_ledger_append_only")


def test_app_role_can_purge_through_the_guarded_paths(app_role):
    from consent.models import Subject
    from consent.purge import subject_history_purge
    from governance.audit import audit_purge_allowed

    factories.record("bob", analytics=True)
    subject_history_purge(subject=Subject.objects.get(), reason="erasure")
    assert not ConsentEvent.objects.exists()
    with audit_purge_allowed():
        AuditEvent.objects.all().delete()
    assert not AuditEvent.objects.exists()
