"""Staff roles (governance.roles) proved through the admin's own URLs: what each role may
open, add, change and delete, and that a view-only role cannot run the admin's actions."""

from __future__ import annotations

from io import BytesIO, StringIO
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.test import RequestFactory

from consent.imports import check
from consent.imports import services as imports
from consent.models import ConsentEvent, ConsentImport, ConsentState, Purpose, Snapshot, Subject
from consent.snapshots import services as snapshots
from governance.actors import Actor
from governance.models import ApiClient, ApiKey, AuditEvent, StaffTotpDevice
from governance.roles import ROLES, roles_sync
from retention.models import ErasureRequest, RetentionPolicy
from tests import factories
from tests.staff import totp_device

pytestmark = pytest.mark.django_db

PO, SUPPORT, AUDITOR = "Privacy officer", "Support", "Auditor"


def _member(role: str) -> User:
    user = User.objects.create_user(role.lower().replace(" ", "-"), is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def rows(purposes, api):
    factories.record("alice", analytics=True)
    api.post("/api/v1/erasure-requests", {"subject_id": "bob"})
    client, _ = factories.api_client(scopes=["checks"])
    line = b'{"subject_id": "cy", "purpose": "analytics", "granted": true, ' + (
        b'"effective_at": "2026-01-01T00:00:00Z", "external_id": "c-1"}'
    )
    checked = check.import_check(body=BytesIO(line + b"\n"), fmt="jsonl", mapping=None)
    return {
        "subject": Subject.objects.first(),
        "state": ConsentState.objects.first(),
        "event": ConsentEvent.objects.first(),
        "purpose": Purpose.objects.get(key="analytics"),
        "policy": RetentionPolicy.objects.first(),
        "erasure": ErasureRequest.objects.first(),
        "audit": AuditEvent.objects.first(),
        "apiclient": client,
        "snapshot": snapshots.snapshot_create(
            actor=Actor.for_client(client), purpose_key="analytics"
        ),
        "import": imports.import_create(actor=Actor.system("test"), checked=checked, queue=False),
    }


def _url(model: Any, view: str, obj: Any = None) -> str:
    meta = model._meta
    base = f"/admin/{meta.app_label}/{meta.model_name}/"
    return {"list": base, "add": f"{base}add/"}.get(view) or f"{base}{obj.pk}/{view}/"


# (model key, view, expected status for Privacy officer, Support, Auditor). "change" on a
# view-only permission shows the read-only page (200); refused pages answer 403.
CASES = [
    ("subject", "list", 200, 200, 200),
    ("subject", "change", 200, 200, 200),
    ("state", "list", 200, 200, 200),
    ("event", "list", 200, 200, 200),
    ("event", "change", 200, 200, 200),
    ("purpose", "list", 200, 200, 200),
    ("purpose", "add", 200, 403, 403),
    ("purpose", "change", 200, 200, 200),
    ("purpose", "delete", 403, 403, 403),  # never deleted: records name it
    ("policy", "list", 200, 403, 200),
    ("policy", "add", 200, 403, 403),
    ("policy", "change", 200, 403, 200),
    ("erasure", "list", 200, 200, 200),
    ("erasure", "change", 200, 200, 200),
    ("audit", "list", 200, 403, 200),
    ("audit", "change", 200, 403, 200),
    ("audit", "delete", 403, 403, 403),  # the audit trail is never edited
    ("apiclient", "list", 200, 403, 200),
    ("apiclient", "add", 200, 403, 403),
    ("apiclient", "change", 200, 403, 200),
    ("apiclient", "delete", 200, 403, 403),
    # Pipelines' and migrations' bulk work: officers and auditors, not support. Never added,
    # edited or deleted through Django's views (a snapshot is deleted through its service).
    ("snapshot", "list", 200, 403, 200),
    ("snapshot", "change", 200, 403, 200),
    ("snapshot", "add", 403, 403, 403),
    ("snapshot", "delete", 403, 403, 403),
    ("snapshot", "destroy", 200, 403, 403),
    ("import", "list", 200, 403, 200),
    ("import", "change", 200, 403, 200),
    ("import", "add", 403, 403, 403),
    ("import", "delete", 403, 403, 403),
]
MODELS = {
    "subject": Subject,
    "state": ConsentState,
    "event": ConsentEvent,
    "purpose": Purpose,
    "policy": RetentionPolicy,
    "erasure": ErasureRequest,
    "audit": AuditEvent,
    "apiclient": ApiClient,
    "snapshot": Snapshot,
    "import": ConsentImport,
}


@pytest.mark.parametrize("role", [PO, SUPPORT, AUDITOR])
def test_each_role_reaches_exactly_its_admin_pages(role, rows, staff_client):
    client = staff_client(_member(role))
    assert client.get("/admin/").status_code == 200
    column = {PO: 0, SUPPORT: 1, AUDITOR: 2}[role]
    got, want = {}, {}
    for key, view, *statuses in CASES:
        url = _url(MODELS[key], view, rows[key])
        got[url], want[url] = client.get(url).status_code, statuses[column]
    assert got == want


@pytest.mark.parametrize("role", [SUPPORT, AUDITOR])
def test_read_only_roles_cannot_change_through_the_admin(role, rows, staff_client):
    client = staff_client(_member(role))
    purpose = rows["purpose"]
    response = client.post(_url(Purpose, "change", purpose), {"name": "Renamed"})
    assert response.status_code == 403
    assert Purpose.objects.get(pk=purpose.pk).name == purpose.name
    assert client.post(_url(Purpose, "add"), {"key": "x", "name": "X"}).status_code == 403
    assert not Purpose.objects.filter(key="x").exists()


def test_an_auditor_sees_api_clients_but_cannot_run_their_actions(rows, staff_client):
    keys = ApiKey.objects.count()
    auditor = staff_client(_member(AUDITOR))
    page = auditor.get(_url(ApiClient, "list")).content.decode()
    assert "issue_new_key" not in page
    auditor.post(
        _url(ApiClient, "list"),
        {"action": "issue_new_key", "_selected_action": [rows["apiclient"].pk]},
    )
    assert ApiKey.objects.count() == keys
    officer = staff_client(_member(PO))
    response = officer.post(
        _url(ApiClient, "list"),
        {"action": "issue_new_key", "_selected_action": [rows["apiclient"].pk]},
    )
    assert response.status_code == 200 and ApiKey.objects.count() == keys + 1


def test_view_only_staff_are_offered_only_actions_that_declare_view(rows):
    request = RequestFactory().get("/admin/")
    request.user = _member(AUDITOR)
    for model, model_admin in admin.site._registry.items():
        for name, (func, *_) in model_admin.get_actions(request).items():
            assert getattr(func, "allowed_permissions", None), (model, name)


def test_authenticators_are_listed_to_officers_and_auditors_and_revoked_by_officers(
    rows, staff_client
):
    device = totp_device(User.objects.create_user("someone", is_staff=True))
    delete = _url(StaffTotpDevice, "delete", device)
    officer, auditor = staff_client(_member(PO)), staff_client(_member(AUDITOR))
    support = staff_client(_member(SUPPORT))
    assert auditor.get(_url(StaffTotpDevice, "list")).status_code == 200
    assert support.get(_url(StaffTotpDevice, "list")).status_code == 403
    assert auditor.post(delete, {"post": "yes"}).status_code == 403
    assert officer.post(delete, {"post": "yes"}).status_code == 302
    assert not StaffTotpDevice.objects.filter(pk=device.pk).exists()
    assert AuditEvent.objects.filter(
        action="admin.delete", target_type="governance.stafftotpdevice"
    )


def test_support_opens_rights_requests_but_exports_and_edits_nothing():
    support = _member(SUPPORT)
    assert support.has_perm("retention.add_erasurerequest")
    assert support.has_perm("retention.add_accessrequest")
    assert support.has_perm("consent.view_subject") and support.has_perm("consent.view_purpose")
    assert not support.has_perm("consent.change_purpose")
    assert not support.has_perm("retention.change_retentionpolicy")
    codenames = set(Group.objects.get(name=SUPPORT).permissions.values_list("codename", flat=True))
    assert not {c for c in codenames if "export" in c}
    assert {c.split("_", 1)[0] for c in codenames} == {"view", "add"}


def test_the_auditor_holds_only_view_permissions_the_audit_trail_included():
    auditor = _member(AUDITOR)
    assert auditor.has_perm("governance.view_auditevent")
    codenames = Group.objects.get(name=AUDITOR).permissions.values_list("codename", flat=True)
    assert codenames and all(c.startswith("view_") for c in codenames)


def test_migrate_made_the_groups_and_a_new_permission_reaches_the_roles_covering_it():
    # The groups exist after migrate (post_migrate runs governance.roles.roles_sync).
    assert set(Group.objects.filter(name__in=ROLES).values_list("name", flat=True)) == set(ROLES)
    assert Group.objects.get(name=PO).permissions.filter(codename="change_purpose").exists()
    # A permission added later (a model's Meta.permissions) reaches the roles on next sync.
    Permission.objects.create(
        codename="notify_subject",
        name="Can write to a person",
        content_type=ContentType.objects.get_for_model(Subject),
    )
    out = StringIO()
    call_command("sync_roles", stdout=out)
    assert "Privacy officer:" in out.getvalue()
    assert _member(PO).has_perm("consent.notify_subject")
    assert not _member(SUPPORT).has_perm("consent.notify_subject")
    assert not _member(AUDITOR).has_perm("consent.notify_subject")
    # The groups are set to the definition: a grant added by hand goes at the next sync.
    support = Group.objects.get(name=SUPPORT)
    support.permissions.add(Permission.objects.get(codename="change_purpose"))
    roles_sync()
    assert not support.permissions.filter(codename="change_purpose").exists()
