"""Rights requests taken and fulfilled by staff in the admin: created through the services
with a verification note (encrypted), due dates (Art. 12(3)) with one extension, overdue
first, access exports downloaded decrypted and audited, notes erased with the person."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from consent import identity
from consent.models import Subject, SubjectNote
from consent.person.services import person_withdraw_all
from governance.actors import Actor
from governance.models import AuditEvent
from governance.reencrypt import encrypted_fields, encrypted_fields_unregistered
from retention.errors import RequestAlreadyExtended
from retention.models import AccessRequest, ErasureRequest, RequestStatus
from retention.selectors import subject_export
from retention.services import requests_notes, rights
from retention.targets.base import SubjectRef
from tests import factories
from tests.staff import staff_sign_in

pytestmark = pytest.mark.django_db(databases=["default", "features"])

SYSTEM = Actor.system("test")
ERASURE_ADD = "admin:retention_erasurerequest_add"
ACCESS_ADD = "admin:retention_accessrequest_add"


def staff_audits(user: Any, **filters: Any) -> Any:
    return AuditEvent.objects.filter(actor_type="staff", actor_id=str(user.pk), **filters)


def limited_staff(*codenames: str) -> Client:
    user = get_user_model().objects.create_user("support", "s@example.com", "pw-support-1")
    user.is_staff = True
    user.save()
    for name in codenames:
        app, codename = name.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    return staff_sign_in(user)


def form(identifier: str, note: str = "Passport checked at the desk", namespace: str = "account"):
    return {"subject_id": identifier, "namespace": namespace, "verification_note": note}


# --- creating -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "model", "action"),
    [
        (ERASURE_ADD, ErasureRequest, "rights.erasure_request"),
        (ACCESS_ADD, AccessRequest, "rights.access_request"),
    ],
)
def test_staff_create_a_request_with_a_required_verification_note(
    admin_client, admin_user, purposes, url, model, action
):
    page = admin_client.get(reverse(url))
    assert page.status_code == 200 and b"verification_note" in page.content
    refused = admin_client.post(reverse(url), form("alice", note="  "))
    assert (
        refused.status_code == 200
        and "verification_note" in refused.context["adminform"].form.errors
    )
    assert not model.objects.exists()

    created = admin_client.post(reverse(url), form("alice"))
    assert created.status_code == 302
    request = model.objects.get()
    assert request.subject_key == identity.subject_key("alice")
    assert request.due_at == requests_notes.add_month(request.created_at)
    assert b"Passport" not in bytes(request.verification_note_encrypted)
    assert (
        requests_notes.note_read(request, "verification_note_encrypted")
        == "Passport checked at the desk"
    )
    audit = staff_audits(admin_user, action=action).get()
    assert audit.detail == {"subject_key": request.subject_key, "verification_note": True}
    # The detail page shows the note to staff, and that look is audited.
    detail = admin_client.get(reverse(url.replace("_add", "_change"), args=[request.pk]))
    assert "Passport checked at the desk" in detail.content.decode()
    assert staff_audits(admin_user, action="admin.view", target_id=str(request.pk)).exists()


def test_identifiers_are_taken_exactly_and_validated(admin_client, purposes):
    admin_client.post(reverse(ERASURE_ADD), form(" alice"))
    assert ErasureRequest.objects.get().subject_key == identity.subject_key(" alice")
    bad = admin_client.post(reverse(ERASURE_ADD), form("bad\x00id"))
    assert bad.status_code == 200 and ErasureRequest.objects.count() == 1
    device = admin_client.post(reverse(ACCESS_ADD), form("dev-1", namespace="device"))
    assert device.status_code == 302 and AccessRequest.objects.get().namespace == "device"


def test_without_the_add_permission_the_admin_answers_with_a_page_not_json(purposes):
    client = limited_staff("retention.view_erasurerequest")
    page = client.get(reverse(ERASURE_ADD))
    assert page.status_code == 403
    assert not page["Content-Type"].startswith("application/json")
    assert client.get(reverse("admin:retention_erasurerequest_changelist")).status_code == 200


def test_the_api_still_answers_json_when_permission_is_denied(make_api, purposes):
    response = make_api("checks").post("/api/v1/erasure-requests", {"subject_id": "x"})
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"


# --- due dates, overdue first, extension ----------------------------------------------------


def test_the_list_shows_due_dates_overdue_first(admin_client, purposes):
    now = timezone.now()
    later = rights.erasure_request_create(subject_id="later", actor=SYSTEM, now=now)
    late = rights.erasure_request_create(
        subject_id="late", actor=SYSTEM, now=now - timedelta(days=40)
    )
    latest_overdue = rights.erasure_request_create(
        subject_id="late2", actor=SYSTEM, now=now - timedelta(days=35)
    )
    done = rights.erasure_request_create(
        subject_id="done", actor=SYSTEM, now=now - timedelta(days=90)
    )
    ErasureRequest.objects.filter(pk=done.pk).update(status=RequestStatus.COMPLETE)
    page = admin_client.get(reverse("admin:retention_erasurerequest_changelist"))
    listed = [r.pk for r in page.context["cl"].result_list]
    assert listed == [late.pk, latest_overdue.pk, later.pk, done.pk]
    html = page.content.decode()
    assert "Due at" in html or "due at" in html.lower()
    assert html.count('alt="True"') == 2  # the two overdue


def test_extend_once_with_a_reason(admin_client, admin_user, purposes):
    created = rights.access_request_create(subject_id="alice", actor=SYSTEM)
    change = admin_client.get(reverse("admin:retention_accessrequest_change", args=[created.pk]))
    extend = reverse("admin:retention_accessrequest_extend", args=[created.pk])
    assert extend in change.content.decode()

    missing = admin_client.post(extend, {"reason": ""})
    assert missing.status_code == 200 and missing.context["form"].errors
    done = admin_client.post(extend, {"reason": "Forty linked accounts to gather"})
    assert done.status_code == 302
    extended = AccessRequest.objects.get(pk=created.pk)
    assert extended.due_at == requests_notes.add_month(requests_notes.add_month(created.due_at))
    assert extended.extended_by == admin_user.get_username()
    assert b"Forty" not in bytes(extended.extension_reason_encrypted)
    assert requests_notes.note_read(extended, "extension_reason_encrypted").startswith("Forty")
    assert staff_audits(admin_user, action="rights.extend").count() == 1

    again = admin_client.post(extend, {"reason": "More"})
    assert again.status_code == 200 and "already extended" in again.content.decode()
    assert AccessRequest.objects.get(pk=created.pk).due_at == extended.due_at
    change = admin_client.get(reverse("admin:retention_accessrequest_change", args=[created.pk]))
    assert extend not in change.content.decode()
    with pytest.raises(RequestAlreadyExtended):
        requests_notes.rights_request_extend(request=extended, reason="x", actor=SYSTEM)


def test_an_extension_needs_the_change_permission(purposes):
    created = rights.erasure_request_create(subject_id="alice", actor=SYSTEM)
    client = limited_staff("retention.view_erasurerequest")
    extend = reverse("admin:retention_erasurerequest_extend", args=[created.pk])
    assert client.post(extend, {"reason": "r"}).status_code == 403
    assert ErasureRequest.objects.get(pk=created.pk).extended_at is None


# --- access exports -------------------------------------------------------------------------


def test_access_export_downloads_decrypted_and_audited(admin_client, admin_user, purposes):
    factories.record("alice", analytics=True)
    created = rights.access_request_create(subject_id="alice", actor=SYSTEM)
    export_url = reverse("admin:retention_accessrequest_export", args=[created.pk])
    assert admin_client.get(export_url).status_code == 404  # not built yet
    rights.access_execute(request_id=created.pk)
    change = admin_client.get(reverse("admin:retention_accessrequest_change", args=[created.pk]))
    assert export_url in change.content.decode()

    download = admin_client.get(export_url)
    assert download.status_code == 200 and "attachment" in download["Content-Disposition"]
    export = json.loads(download.content)
    assert export["subject"]["identifier"] == "alice"
    assert [e["purpose"] for e in export["consent_history"]] == ["analytics"]
    audit = staff_audits(admin_user, action="admin.download", target_type="access_export").get()
    assert audit.target_id == str(created.pk)
    assert audit.detail["subject_key"] == identity.subject_key("alice")


def test_access_export_needs_the_export_permission(purposes):
    created = rights.access_request_create(subject_id="alice", actor=SYSTEM)
    rights.access_execute(request_id=created.pk)
    export_url = reverse("admin:retention_accessrequest_export", args=[created.pk])
    viewer = limited_staff("retention.view_accessrequest")
    assert viewer.get(export_url).status_code == 403
    change = viewer.get(reverse("admin:retention_accessrequest_change", args=[created.pk]))
    assert export_url not in change.content.decode()


# --- encryption and erasure of the notes ----------------------------------------------------


def test_the_notes_are_registered_for_key_rotation():
    labels = {spec.label for spec in encrypted_fields()}
    for model in ("ErasureRequest", "AccessRequest"):
        for field in requests_notes.NOTE_FIELDS:
            assert f"retention.{model}.{field}" in labels
    assert "consent.SubjectNote.note_encrypted" in labels
    assert encrypted_fields_unregistered() == []


def test_erasure_destroys_the_staff_notes_about_the_person(purposes):
    factories.record("alice", analytics=True)
    alice = Subject.objects.get(key=identity.subject_key("alice"))
    person_withdraw_all(subject=alice, identifier="alice", note="Asked by phone", actor=SYSTEM)
    access = rights.access_request_create(
        subject_id="alice", actor=SYSTEM, verification_note="Driving licence"
    )
    earlier = rights.erasure_request_create(
        subject_id="alice", actor=SYSTEM, verification_note="Utility bill"
    )
    requests_notes.rights_request_extend(request=earlier, reason="Many systems", actor=SYSTEM)
    other = rights.access_request_create(subject_id="bob", actor=SYSTEM, verification_note="Id")
    erasure = rights.erasure_request_create(
        subject_id="alice", actor=SYSTEM, verification_note="Passport"
    )
    assert SubjectNote.objects.filter(subject=alice).exists()

    done = rights.erasure_execute(request_id=erasure.pk)
    assert done.status == RequestStatus.COMPLETE
    for request in ErasureRequest.objects.filter(pk__in=[erasure.pk, earlier.pk]):
        assert request.verification_note_encrypted is None
        assert request.extension_reason_encrypted is None
    # Access requests are a registered target: the person's go whole.
    assert not AccessRequest.objects.filter(pk=access.pk).exists()
    assert not SubjectNote.objects.filter(subject=alice).exists()
    # Another person's notes stay.
    assert AccessRequest.objects.get(pk=other.pk).verification_note_encrypted is not None


def test_due_dates_follow_article_12(purposes):
    opened = datetime(2026, 1, 31, 12, tzinfo=UTC)
    created = rights.erasure_request_create(subject_id="a", actor=SYSTEM, now=opened)
    assert created.due_at == datetime(2026, 2, 28, 12, tzinfo=UTC)
    extended = requests_notes.rights_request_extend(request=created, reason="complex", actor=SYSTEM)
    assert extended.due_at == datetime(2026, 4, 28, 12, tzinfo=UTC)


def test_the_access_export_holds_the_staff_notes_without_their_authors(purposes):
    factories.record("alice@example.com", analytics=True)
    alice = Subject.objects.get(key=identity.subject_key("alice@example.com"))
    staff = get_user_model().objects.create_user("officer", is_staff=True)
    person_withdraw_all(
        subject=alice,
        identifier="alice@example.com",
        note="Asked by phone",
        actor=Actor.for_staff(staff),
    )
    export = subject_export(ref=SubjectRef(key=alice.key, namespace="account"))
    assert [(n["action"], n["note"]) for n in export["staff_notes"]] == [
        ("withdraw_all", "Asked by phone")
    ]
    assert "officer" not in json.dumps(export["staff_notes"], default=str)
