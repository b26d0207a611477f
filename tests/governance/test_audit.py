"""The audit trail: every admin change and API write, append-only, read-only in the admin."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.db import IntegrityError, InternalError, connection, transaction
from django.test import Client

from governance.audit import audit_purge_allowed, hash_ip
from governance.models import ApiClient, AuditEvent
from tests.governance.test_auth import ENDPOINTS

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(staff_client) -> Client:
    client = Client(REMOTE_ADDR="203.0.113.9")
    return staff_client(User.objects.create_superuser("dpo", "dpo@example.com", "pw"), client)


def test_admin_add_change_delete_are_audited_with_user_and_hashed_address(staff, purposes):
    response = staff.post(
        "/admin/governance/apiclient/add/",
        {
            "name": "pipeline",
            "kind": "secret",
            "scopes": ["checks"],
            "active": "on",
            "keys-TOTAL_FORMS": "0",
            "keys-INITIAL_FORMS": "0",
        },
    )
    # 200: the new key is shown on the page itself, not carried to a redirect in a message.
    assert response.status_code == 200, response.content
    client = ApiClient.objects.get(name="pipeline")
    response = staff.post(
        f"/admin/governance/apiclient/{client.pk}/change/",
        {
            "name": "pipeline",
            "kind": "secret",
            "scopes": ["checks", "consent:read"],
            "active": "on",
            "keys-TOTAL_FORMS": "1",
            "keys-INITIAL_FORMS": "1",
            "keys-0-id": client.keys.get().pk,
            "keys-0-client": client.pk,
        },
    )
    assert response.status_code == 302, response.content
    added = AuditEvent.objects.get(action="admin.add", target_type="governance.apiclient")
    changed = AuditEvent.objects.get(action="admin.change", target_type="governance.apiclient")
    for row in (added, changed):
        assert (row.actor_type, row.actor_label) == ("staff", "dpo")
        assert row.target_id == str(client.pk)
        assert row.ip_hash == hash_ip("203.0.113.9") and "203.0.113.9" not in row.ip_hash
    assert "scopes" in str(changed.detail["message"])
    assert AuditEvent.objects.filter(action="api_key.issue", target_type="api_key").exists()


def test_third_party_admins_are_audited_too_bulk_delete_included(staff):
    groups = [Group.objects.create(name=f"g{i}") for i in range(3)]
    response = staff.post(
        "/admin/auth/group/",
        {"action": "delete_selected", "_selected_action": [g.pk for g in groups], "post": "yes"},
    )
    assert response.status_code == 302
    deleted = AuditEvent.objects.filter(action="admin.delete", target_type="auth.group")
    assert sorted(deleted.values_list("target_id", flat=True)) == sorted(str(g.pk) for g in groups)


def test_api_writes_are_audited(api):
    response = api.post(
        "/api/v1/consents",
        {"subject_id": "alice", "decisions": [{"purpose": "analytics", "granted": True}]},
    )
    assert response.status_code == 201
    row = AuditEvent.objects.get(action="consent.record")
    assert row.actor_type == "api_client" and row.target_id == response.json()["receipt_id"]
    assert row.actor_key and api.key.startswith(row.actor_key)
    assert "alice" not in str(row.detail)


def _audit_row() -> AuditEvent:
    return AuditEvent.objects.create(at="2026-01-01T00:00:00Z", actor_type="system", action="x")


def test_audit_rows_cannot_be_updated_or_deleted():
    row = _audit_row()
    with pytest.raises((IntegrityError, InternalError)), transaction.atomic():
        AuditEvent.objects.filter(pk=row.pk).update(action="forged")
    with pytest.raises((IntegrityError, InternalError)), transaction.atomic():
        AuditEvent.objects.filter(pk=row.pk).delete()
    with (
        pytest.raises((IntegrityError, InternalError)),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM governance_auditevent")
    assert AuditEvent.objects.filter(pk=row.pk, action="x").exists()


def test_audit_purge_path_deletes_and_only_inside_its_block():
    keep, drop = _audit_row(), _audit_row()
    with audit_purge_allowed():
        AuditEvent.objects.filter(pk=drop.pk).delete()
    with pytest.raises((IntegrityError, InternalError)), transaction.atomic():
        AuditEvent.objects.filter(pk=keep.pk).delete()
    assert list(AuditEvent.objects.values_list("pk", flat=True)) == [keep.pk]


def test_audit_admin_is_read_only_and_filterable(staff):
    _audit_row()
    row = AuditEvent.objects.get()
    listing = staff.get("/admin/governance/auditevent/?action=x&actor_type=system")
    assert listing.status_code == 200 and b"field-action" in listing.content
    assert staff.get("/admin/governance/auditevent/add/").status_code == 403
    response = staff.post(f"/admin/governance/auditevent/{row.pk}/change/", {"action": "forged"})
    assert response.status_code == 403
    assert (
        staff.post(f"/admin/governance/auditevent/{row.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert AuditEvent.objects.get().action == "x"


WRITES = [e for e in ENDPOINTS if e[0] == "post"]


def _row_counts() -> dict[str, int]:
    from django.apps import apps

    return {
        m._meta.label: m._default_manager.count()
        for m in apps.get_models()
        if m is not AuditEvent and m._meta.managed and not m._meta.proxy
    }


@pytest.mark.parametrize(("method", "path", "body", "scope"), WRITES)
def test_every_api_write_in_the_matrix_leaves_an_audit_row_naming_the_key(
    purposes, make_api, method, path, body, scope
):
    """Any POST of the scope matrix that adds rows also adds an audit row, naming the key."""
    from tests import factories
    from tests.governance import test_auth

    factories.record("u", analytics=True)  # so that a withdrawal has something to withdraw
    kind = next(k for k in test_auth.KEY_KINDS if any(k[3](scope, h) for h in k[2]))
    _, make_key, held_scopes, may_call = kind
    api = make_key(make_api, next(h for h in held_scopes if may_call(scope, h)))
    before_counts = _row_counts()
    before = set(AuditEvent.objects.values_list("pk", flat=True))
    response = test_auth.call(api, method, path, body)
    assert response.status_code < 300, response.content
    grown = [k for k, v in _row_counts().items() if v > before_counts[k]]
    rows = AuditEvent.objects.exclude(pk__in=before).filter(actor_type="api_client")
    if grown:
        assert rows.exists(), (path, grown)
    assert all(r.actor_key and api.key.startswith(r.actor_key) for r in rows), path
