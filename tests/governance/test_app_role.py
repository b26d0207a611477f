"""Least privilege: the role the app runs as cannot touch the ledger's trigger or table, and
deletes ledger and audit rows only through the owner-owned purge functions."""

from __future__ import annotations

import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from consent.models import ConsentEvent, Subject
from governance.actors import Actor
from governance.audit import audit_purge_allowed
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


def _old_audit(*, years: int = 7, **fields) -> AuditEvent:
    # Made by the owner before the role switch, or by the app role: INSERT is the app's right.
    return AuditEvent.objects.create(
        at=timezone.now() - timedelta(days=365 * years), actor_type="system", **fields
    )


def test_app_role_purges_a_history_only_whole_and_with_its_tombstone(app_role):
    from consent.ledger.purge import subject_history_purge

    factories.record("bob", analytics=True)
    bob = Subject.objects.get()
    tombstone = subject_history_purge(subject=bob, reason="erasure")
    assert not ConsentEvent.objects.exists()
    assert tombstone.subject_key == bob.key and tombstone.reason == "erasure"
    assert tombstone.removed == {"consent_events": 1, "consent_states": 1, "consent_contexts": 1}
    assert tombstone.final_chain_hash == bob.chain_head


def test_ledger_purge_function_refuses_an_unknown_reason(app_role):
    factories.record("bob", analytics=True)
    message = refused(f"SELECT ledger_purge_subject({Subject.objects.get().pk}, 'tidy up')")
    assert "unknown reason" in message
    assert ConsentEvent.objects.count() == 1


def test_app_role_cannot_open_the_ledger_trigger_with_a_guard_row_or_the_setting(app_role):
    factories.record("carol", analytics=True)
    event = ConsentEvent.objects.get()
    with transaction.atomic(), connection.cursor() as cursor:
        # Both succeed (the role may insert rows and set custom settings)...
        cursor.execute("INSERT INTO consent_ledgerpurgeguard (reason) VALUES ('forged')")
        cursor.execute("SELECT set_config('consent.ledger_purge', 'on', true)")
        # ...and neither opens the trigger: only the table's owner, inside the function, may.
        message = refused(f"DELETE FROM consent_consentevent WHERE id = '{event.pk}'")
        assert "append-only" in message
    assert ConsentEvent.objects.filter(pk=event.pk).exists()


def test_app_role_cannot_delete_an_audit_row_with_the_setting(app_role):
    row = _old_audit(action="consent.record")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('governance.audit_purge', 'on', true)")
        assert "append-only" in refused(f"DELETE FROM governance_auditevent WHERE id = {row.pk}")
    with audit_purge_allowed():  # the permit the owner's sessions (and SQLite) use
        assert "append-only" in refused(f"DELETE FROM governance_auditevent WHERE id = {row.pk}")
    assert AuditEvent.objects.filter(pk=row.pk).exists()


def test_app_role_cannot_replace_or_reconfigure_the_purge_functions(app_role):
    for statement in (
        "ALTER FUNCTION audit_purge_before(timestamptz, tid, tid, bigint[]) "
        "SET governance.audit_floor_days = '0'",
        "CREATE OR REPLACE FUNCTION audit_purge_subject(p_subject_key text) RETURNS bigint "
        "LANGUAGE sql AS $$ SELECT 0::bigint $$",
        "DROP FUNCTION ledger_purge_subject(bigint, text, jsonb)",
    ):
        message = refused(statement)
        assert "must be owner" in message or "permission denied" in message, statement


def test_audit_purge_before_never_removes_rows_younger_than_the_floor(app_role):
    old = _old_audit(action="consent.record")
    recent = _old_audit(years=1, action="consent.record")
    policy_row = _old_audit(action="retention.policy_update", target_type="retention_policy")
    admin_row = _old_audit(action="admin.change", target_type="retention.retentionpolicy")
    with connection.cursor() as cursor:
        # The caller asks for everything up to tomorrow; the floor (6 years) still holds.
        cursor.execute("SELECT audit_purge_before(now() + interval '1 day')")
        assert cursor.fetchone()[0] == 1
    assert not AuditEvent.objects.filter(pk=old.pk).exists()
    assert AuditEvent.objects.filter(pk__in=[recent.pk, policy_row.pk, admin_row.pk]).count() == 3


def test_audit_purge_subject_keeps_the_record_of_rights_requests(app_role):
    mine = _old_audit(years=0, action="consent.record", detail={"subject_key": "k" * 64})
    rights = _old_audit(years=0, action="rights.erasure_request", detail={"subject_key": "k" * 64})
    other = _old_audit(years=0, action="consent.record", detail={"subject_key": "o" * 64})
    with connection.cursor() as cursor:
        cursor.execute("SELECT audit_purge_subject(%s)", ["k" * 64])
        assert cursor.fetchone()[0] == 1
    assert not AuditEvent.objects.filter(pk=mine.pk).exists()
    assert AuditEvent.objects.filter(pk__in=[rights.pk, other.pk]).count() == 2


def test_app_role_runs_the_audit_retention_policy_through_the_function(app_role):
    from retention.models import RetentionPolicy
    from retention.services.enforcement import retention_enforce

    old = _old_audit(action="consent.record")
    kept = _old_audit(years=1, action="consent.record")
    policy = RetentionPolicy.objects.get(name="default: governance.AuditEvent")
    run = retention_enforce(policy_ids=[policy.pk]).run
    assert run.status == "complete", run.error
    assert run.items.get().removed == 1
    assert not AuditEvent.objects.filter(pk=old.pk).exists()
    assert AuditEvent.objects.filter(pk=kept.pk).exists()


def test_app_role_can_erase_a_person_completely(app_role, settings):
    from consent import identity
    from retention.services.rights import erasure_execute, erasure_request_create

    settings.RETENTION_EXTERNAL_TABLES = []  # the feature store is the retention tests' business

    factories.record("dave", analytics=True)
    request = erasure_request_create(subject_id="dave", actor=Actor.system("test"))
    done = erasure_execute(request_id=request.pk)
    assert done.status == "complete", done.error
    key = identity.subject_key("dave")
    assert not ConsentEvent.objects.exists()
    remaining = AuditEvent.objects.filter(detail__subject_key=key)
    assert set(remaining.values_list("action", flat=True)) == {
        "rights.erasure_request",
        "rights.erasure_complete",
    }


def test_purge_functions_run_as_their_owner_with_a_pinned_search_path():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT proname, prosecdef, proconfig, pg_get_userbyid(proowner), "
            "has_function_privilege('public', oid, 'EXECUTE') FROM pg_proc "
            "WHERE proname IN ('ledger_purge_subject', 'audit_purge_before', "
            "'audit_purge_subject')"
        )
        rows = {r[0]: r[1:] for r in cursor.fetchall()}
        cursor.execute("SELECT current_user")
        owner = cursor.fetchone()[0]
    assert set(rows) == {"ledger_purge_subject", "audit_purge_before", "audit_purge_subject"}
    for name, (definer, config, function_owner, public_may_call) in rows.items():
        assert definer and function_owner == owner, name
        assert any(c.startswith("search_path=pg_catalog,") for c in config), name
        assert not public_may_call, name


def test_a_role_without_the_grant_cannot_call_the_purge_functions():
    role = f"gov_other_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{role}" NOLOGIN')
        cursor.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
        cursor.execute(f'SET ROLE "{role}"')
    try:
        for statement in (
            "SELECT audit_purge_before(now())",
            "SELECT audit_purge_subject('x')",
            "SELECT ledger_purge_subject(1, 'erasure')",
        ):
            assert "permission denied" in refused(statement), statement
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
