"""The admin's Person page: found by an exact identifier, a person's whole record, actions
through the services, and every look at a person audited with the staff user."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from consent import identity, services
from consent.banner.services import subject_link
from consent.checks.selectors import purpose_rule_get
from consent.checks.services import checks_run
from consent.models import ConsentEvent, ConsentState, Subject, SubjectNote
from governance.actors import Actor
from governance.models import AuditEvent
from retention.models import AccessRequest, ErasureRequest, LegalHold
from retention.services import holds
from tests import factories
from tests.staff import staff_sign_in

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("test")
FIND = "admin:person_find"


def person_url(subject: Subject) -> str:
    return reverse("admin:person_detail", args=[subject.pk])


def action_url(subject: Subject, action: str) -> str:
    return reverse("admin:person_action", args=[subject.pk, action])


def subject_of(identifier: str, namespace: str = "account") -> Subject:
    return Subject.objects.get(namespace=namespace, key=identity.subject_key(identifier))


def staff_audits(user: Any, **filters: Any) -> Any:
    return AuditEvent.objects.filter(actor_type="staff", actor_id=str(user.pk), **filters)


@pytest.fixture
def admin(admin_user: Any) -> Any:
    return admin_user


@pytest.fixture
def alice(purposes: dict[str, Any]) -> Subject:
    factories.record("alice@example.com", analytics=True, ml_training=False)
    return subject_of("alice@example.com")


def limited_staff(*codenames: str) -> Client:
    """A staff user (not a superuser) with only the named permissions ("app.codename")."""
    user = get_user_model().objects.create_user("support", "s@example.com", "pw-support-1")
    user.is_staff = True
    user.save()
    for name in codenames:
        app, codename = name.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    return staff_sign_in(user)


# --- finding a person -----------------------------------------------------------------------


def test_find_by_exact_identifier_in_each_namespace(admin_client, admin, purposes):
    factories.record("alice@example.com", analytics=True)
    services.consent_record(
        subject_id="dev-7f3a",
        decisions=[services.DecisionInput("analytics", True)],
        actor=SYSTEM,
        namespace="device",
    )
    account, device = subject_of("alice@example.com"), subject_of("dev-7f3a", "device")

    found = admin_client.get(reverse(FIND), {"q": "alice@example.com"})
    assert found.status_code == 302 and found["Location"] == person_url(account)
    found = admin_client.get(reverse(FIND), {"q": "dev-7f3a"})
    assert found["Location"] == person_url(device)
    found = admin_client.get(reverse(FIND), {"q": "dev-7f3a", "namespace": "device"})
    assert found["Location"] == person_url(device)
    # Exact only: a prefix, a near miss or the wrong namespace finds nobody.
    for q, namespace in [
        ("alice@example.co", ""),
        ("alice", ""),
        ("ALICE@example.com", ""),
        ("alice@example.com", "device"),
    ]:
        page = admin_client.get(reverse(FIND), {"q": q, "namespace": namespace})
        assert page.status_code == 200
        assert b"No person has this identifier" in page.content
    audits = staff_audits(admin, action="admin.find")
    assert audits.count() == 7
    assert audits.filter(detail__subject_key=account.key, detail__found=1).exists()


def test_the_same_identifier_in_two_namespaces_lists_both(admin_client, purposes):
    for namespace in ("account", "device"):
        services.consent_record(
            subject_id="shared-id",
            decisions=[services.DecisionInput("analytics", True)],
            actor=SYSTEM,
            namespace=namespace,
        )
    page = admin_client.get(reverse(FIND), {"q": "shared-id"})
    assert page.status_code == 200
    assert b"2 people with this identifier" in page.content
    for namespace in ("account", "device"):
        assert person_url(subject_of("shared-id", namespace)).encode() in page.content


def test_find_refuses_an_invalid_identifier_with_a_message(admin_client, purposes):
    page = admin_client.get(reverse(FIND), {"q": "bad\x00id"})
    assert page.status_code == 200 and b"errornote" in page.content
    assert not AuditEvent.objects.filter(action="admin.find").exists()


def test_the_person_page_is_reached_by_subject_key_too(admin_client, alice):
    page = admin_client.get(reverse("admin:person_detail", args=[alice.key]))
    assert page.status_code == 200
    assert b"alice@example.com" in page.content
    missing = admin_client.get(reverse("admin:person_detail", args=["0" * 64]))
    assert missing.status_code == 404


# --- the record -----------------------------------------------------------------------------


def test_person_page_shows_each_purpose_with_the_reason_a_check_gives(admin_client, alice):
    page = admin_client.get(person_url(alice))
    html = page.content.decode()
    assert page.status_code == 200
    assert "alice@example.com" in html
    statuses = {s.purpose.key: s for s in page.context["statuses"]}
    assert statuses["analytics"].verdict.reason == "granted"
    assert statuses["ml_training"].verdict.reason == "refused"
    assert statuses["direct_marketing"].verdict.reason == "no_consent"
    assert statuses["security"].verdict.reason == "legitimate_interest"
    assert statuses["service"].verdict.reason == "contract"
    # The same answers as the checks' own single check.
    from consent.checks.selectors import check_one

    for key, status in statuses.items():
        _, verdict = check_one(identifier="alice@example.com", purpose_key=key, as_of=None)
        assert status.verdict.reason == verdict.reason
    assert "no_consent" in html and "refused" in html


def test_history_is_paginated_newest_first_with_receipts_and_chain_status(
    admin_client, admin, alice
):
    for i in range(14):  # 2 events so far, 28 more: 30 in all, two pages of 25 and 5
        factories.record("alice@example.com", analytics=i % 2 == 1, ml_training=i % 2 == 0)
    assert ConsentEvent.objects.filter(subject=alice).count() == 30
    first = admin_client.get(person_url(alice))
    events = list(first.context["history"])
    assert [e.seq for e in events] == list(range(30, 5, -1))
    assert first.context["chain"].ok and "person-chain-ok" in first.content.decode()
    assert first.content.decode().count("person-event-ok") == 25
    receipt = reverse("admin:person_receipt", args=[events[0].receipt_id])
    assert receipt in first.content.decode()
    second = admin_client.get(person_url(alice), {"page": 2})
    assert [e.seq for e in second.context["history"]] == [5, 4, 3, 2, 1]

    signed = admin_client.get(receipt)
    assert signed.status_code == 200
    body = signed.json()
    assert body["jws"].count(".") == 2
    assert body["kantara"]["piiPrincipalId"] == "alice@example.com"
    assert staff_audits(admin, action="admin.view", target_type="receipt").count() == 1


def test_a_broken_chain_shows_on_the_person_page(admin_client, alice):
    Subject.objects.filter(pk=alice.pk).update(chain_head="0" * 64)
    page = admin_client.get(person_url(alice))
    assert not page.context["chain"].ok
    assert "person-chain-broken" in page.content.decode()
    assert "head_mismatch" in page.content.decode()


def test_linked_devices_and_the_decisions_that_used_the_person_with_drift(
    admin_client, alice, purposes
):
    services.consent_record(
        subject_id="dev-1",
        decisions=[services.DecisionInput("direct_marketing", True)],
        actor=SYSTEM,
        namespace="device",
    )
    assert subject_link(device_id="dev-1", subject_id="alice@example.com", actor=SYSTEM)
    data_use = factories_data_use()
    result = checks_run(
        actor=SYSTEM,
        rule=purpose_rule_get("analytics"),
        ids=["alice@example.com", "nobody"],
        data_use=data_use,
        lineage=True,
    )
    services.consent_withdraw(subject_id="alice@example.com", actor=SYSTEM)
    page = admin_client.get(person_url(alice))
    html = page.content.decode()
    assert len(page.context["links"]) == 1
    assert "this account" in html
    assert person_url(subject_of("dev-1", "device")) in html
    [use] = page.context["decisions"]
    assert use.decision.pk == result.decision.pk
    assert use.drifted and use.verdict.reason == "withdrawn"
    assert "churn_model" in html and "drifted: withdrawn" in html
    # The device's page links back to the account.
    device_page = admin_client.get(person_url(subject_of("dev-1", "device")))
    assert "this device" in device_page.content.decode()
    assert person_url(alice) in device_page.content.decode()


def factories_data_use() -> Any:
    from consent.decisions.services import data_use_create

    return data_use_create(
        key="churn_model", name="Churn model", purpose_key="analytics", actor=SYSTEM
    )


def test_requests_and_holds_show_on_the_person_page(admin_client, alice):
    from retention.services import rights

    rights.erasure_request_create(subject_id="alice@example.com", actor=SYSTEM)
    rights.access_request_create(subject_id="alice@example.com", actor=SYSTEM)
    holds.hold_place(reason="litigation 2026-7", actor=SYSTEM, subject_id="alice@example.com")
    page = admin_client.get(person_url(alice))
    sections = {section.key: data for section, data in page.context["sections"]}
    assert len(sections["erasure_requests"]["requests"]) == 1
    assert len(sections["access_requests"]["requests"]) == 1
    assert [h.reason for h in sections["legal_holds"]["holds"]] == ["litigation 2026-7"]
    assert "litigation 2026-7" in page.content.decode()


# --- actions --------------------------------------------------------------------------------


def test_withdraw_all_asks_to_confirm_then_withdraws_with_the_note_audited(
    admin_client, admin, alice
):
    url = action_url(alice, "withdraw_all")
    assert admin_client.get(url).status_code == 200
    missing_note = admin_client.post(url, {"note": " "})
    assert missing_note.status_code == 200 and missing_note.context["form"].errors
    asked = admin_client.post(url, {"note": "Phoned on 3 May, asked to stop everything."})
    assert asked.status_code == 200 and asked.context["confirming"]
    assert b'name="confirmed" value="yes"' in asked.content
    assert ConsentState.objects.get(subject=alice, purpose__key="analytics").status == "granted"

    done = admin_client.post(
        url, {"note": "Phoned on 3 May, asked to stop everything.", "confirmed": "yes"}
    )
    assert done.status_code == 302 and done["Location"] == person_url(alice)
    assert ConsentState.objects.get(subject=alice, purpose__key="analytics").status == "withdrawn"
    withdrawal = ConsentEvent.objects.filter(subject=alice).order_by("-seq").first()
    assert (withdrawal.source, withdrawal.actor_type) == ("admin", "staff")
    assert withdrawal.actor_id == str(admin.pk)
    action = staff_audits(admin, action="person.withdraw_all").get()
    assert action.detail["subject_key"] == alice.key
    assert action.detail["withdrawn"] == ["analytics"]
    note = SubjectNote.objects.get(subject=alice)
    assert b"Phoned" not in bytes(note.note_encrypted)
    page = admin_client.get(person_url(alice))
    assert "Phoned on 3 May" in page.content.decode()


def test_actions_are_posts_with_csrf(alice, admin):
    client = Client(enforce_csrf_checks=True)
    client.cookies = staff_sign_in(admin).cookies
    refused = client.post(action_url(alice, "withdraw_all"), {"note": "x", "confirmed": "yes"})
    assert refused.status_code == 403
    assert ConsentState.objects.get(subject=alice, purpose__key="analytics").status == "granted"


def test_open_requests_and_place_and_lift_a_hold_from_the_person_page(admin_client, admin, alice):
    note = {"verification_note": "Passport seen at the desk"}
    erasure = action_url(alice, "erasure_request")
    assert admin_client.post(erasure, note).context["confirming"]  # destructive: confirm
    assert admin_client.post(erasure, {**note, "confirmed": "yes"}).status_code == 302
    assert admin_client.post(action_url(alice, "access_request"), note).status_code == 302
    assert ErasureRequest.objects.filter(subject_key=alice.key).count() == 1
    assert AccessRequest.objects.filter(subject_key=alice.key).count() == 1
    assert staff_audits(admin, action="rights.erasure_request").count() == 1
    assert staff_audits(admin, action="rights.access_request").count() == 1

    placed = admin_client.post(action_url(alice, "hold_place"), {"reason": "tax audit"})
    assert placed.status_code == 302
    hold = LegalHold.objects.get(subject_key=alice.key)
    assert staff_audits(admin, action="retention.hold_place").count() == 1
    lift = action_url(alice, "hold_lift")
    assert admin_client.post(lift, {"hold": hold.pk}).context["confirming"]
    assert admin_client.post(lift, {"hold": hold.pk, "confirmed": "yes"}).status_code == 302
    hold.refresh_from_db()
    assert hold.released_at is not None
    assert staff_audits(admin, action="retention.hold_release").count() == 1


def test_an_erased_person_offers_no_actions(admin_client, alice):
    services.subject_mark_erased(subject=alice)
    Subject.objects.filter(pk=alice.pk).update(identifier_encrypted=None)
    page = admin_client.get(person_url(alice))
    assert "(erased)" in page.content.decode() and page.context["actions"] == []
    response = admin_client.post(
        action_url(alice, "withdraw_all"), {"note": "x", "confirmed": "yes"}
    )
    assert response.status_code == 302


# --- downloads ------------------------------------------------------------------------------


def test_download_the_record_as_json_and_csv_audited(admin_client, admin, alice):
    holds.hold_place(reason="=cmd|' /C calc'!A0", actor=SYSTEM, subject_id="alice@example.com")
    as_json = admin_client.get(reverse("admin:person_download", args=[alice.pk, "json"]))
    assert as_json.status_code == 200
    assert "attachment" in as_json["Content-Disposition"]
    record = json.loads(as_json.content)
    assert record["subject"]["identifier"] == "alice@example.com"
    assert [e["seq"] for e in record["events"]] == [1, 2]
    assert all(e["chain_ok"] for e in record["events"])
    assert {s["purpose"]: s["reason"] for s in record["statuses"]}["analytics"] == "granted"
    assert record["legal_holds"][0]["reason"].startswith("=cmd")

    as_csv = admin_client.get(reverse("admin:person_download", args=[alice.pk, "csv"]))
    assert as_csv["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.content.decode())))
    assert [(r["seq"], r["purpose"], r["action"]) for r in rows] == [
        ("1", "analytics", "granted"),
        ("2", "ml_training", "refused"),
    ]
    assert {r["identifier"] for r in rows} == {"alice@example.com"}
    downloads = staff_audits(admin, action="admin.download", target_type="person_record")
    assert sorted(d.detail["format"] for d in downloads) == ["csv", "json"]
    xml = admin_client.get(reverse("admin:person_download", args=[alice.pk, "xml"]))
    assert xml.status_code == 404


def test_csv_cells_that_would_run_as_formulas_are_defused(admin_client, alice):
    services.consent_record(
        subject_id="alice@example.com",
        decisions=[services.DecisionInput("analytics", False)],
        actor=Actor.system("=HYPERLINK(1)"),
    )
    rows = admin_client.get(reverse("admin:person_download", args=[alice.pk, "csv"]))
    assert "'=HYPERLINK(1)" in rows.content.decode()


# --- every look is audited ------------------------------------------------------------------


def test_every_view_of_a_person_is_audited_with_the_staff_user(admin_client, admin, alice):
    event = ConsentEvent.objects.filter(subject=alice).first()
    state = ConsentState.objects.filter(subject=alice).first()
    views = [
        (person_url(alice), "person"),
        (reverse("admin:consent_subject_change", args=[alice.pk]), "consent.subject"),
        (
            reverse("admin:consent_subject_changelist") + "?q=alice@example.com",
            "consent.subject_list",
        ),
        (
            reverse("admin:consent_consentevent_changelist") + f"?subject__id__exact={alice.pk}",
            "consent.consentevent_list",
        ),
        (
            reverse("admin:consent_consentevent_changelist") + f"?q={event.receipt_id}",
            "consent.consentevent_list",
        ),
        (reverse("admin:consent_consentevent_change", args=[event.pk]), "consent.consentevent"),
        (reverse("admin:consent_consentstate_change", args=[state.pk]), "consent.consentstate"),
    ]
    for url, what in views:
        before = AuditEvent.objects.count()
        assert admin_client.get(url).status_code == 200, url
        seen = staff_audits(admin, target_type=what).order_by("-id").first()
        assert AuditEvent.objects.count() > before, url
        assert seen is not None and seen.detail["subject_key"] == alice.key, url
        assert seen.actor_label == admin.get_username()
    # A list that names nobody in particular is not a look at a person.
    before = AuditEvent.objects.count()
    admin_client.get(reverse("admin:consent_consentevent_changelist"))
    assert AuditEvent.objects.count() == before


def test_the_audit_trail_filters_by_staff_user(admin_client, admin, alice):
    other = limited_staff("consent.view_subject")
    other.get(person_url(alice))
    admin_client.get(person_url(alice))
    support = get_user_model().objects.get(username="support")
    page = admin_client.get(
        reverse("admin:governance_auditevent_changelist"), {"staff": str(support.pk)}
    )
    assert page.status_code == 200
    shown = list(page.context["cl"].result_list)
    assert shown and {a.actor_id for a in shown} == {str(support.pk)}
    assert "staff user" in page.content.decode()


# --- permissions ----------------------------------------------------------------------------


def test_a_staff_user_sees_and_does_only_what_their_permissions_allow(alice):
    client = limited_staff("consent.view_subject")
    page = client.get(person_url(alice))
    assert page.status_code == 200
    assert page.context["history"] is None and page.context["decisions"] is None
    assert page.context["actions"] == [] and page.context["sections"] == []
    assert not page.context["can_export"]
    denied = client.post(action_url(alice, "withdraw_all"), {"note": "x", "confirmed": "yes"})
    assert denied.status_code == 403
    assert b"permission_denied" not in denied.content  # the admin answers with a page
    for fmt in ("json", "csv"):
        assert client.get(reverse("admin:person_download", args=[alice.pk, fmt])).status_code == 403
    assert ConsentState.objects.get(subject=alice, purpose__key="analytics").status == "granted"


def test_withdraw_and_export_permissions_are_enough_for_those(alice):
    client = limited_staff(
        "consent.view_subject", "consent.add_consentevent", "consent.export_person"
    )
    page = client.get(person_url(alice))
    assert [a.key for a in page.context["actions"]] == ["withdraw_all"]
    done = client.post(action_url(alice, "withdraw_all"), {"note": "asked", "confirmed": "yes"})
    assert done.status_code == 302
    assert client.get(reverse("admin:person_download", args=[alice.pk, "json"])).status_code == 200


def test_without_view_permission_nothing_is_shown(alice):
    client = limited_staff()
    assert client.get(reverse(FIND), {"q": "alice@example.com"}).status_code == 403
    assert client.get(person_url(alice)).status_code == 403
    assert not AuditEvent.objects.filter(action__startswith="admin.").exists()
