"""The Person page's Art. 18 and Art. 16 actions: restrict and lift with a reason kept
encrypted, change the identifier after a confirmation; each through its service, audited
with the staff user; and what each role is offered there."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from consent import identity
from consent.checks.selectors import check_one
from consent.models import ConsentEvent, Restriction, Subject
from governance.models import AuditEvent
from tests import factories
from tests.staff import staff_sign_in

pytestmark = pytest.mark.django_db

PERSON = "alice@example.com"


def person_url(subject: Subject) -> str:
    return reverse("admin:person_detail", args=[subject.pk])


def action_url(subject: Subject, action: str) -> str:
    return reverse("admin:person_action", args=[subject.pk, action])


def staff_audits(user: Any, **filters: Any) -> Any:
    return AuditEvent.objects.filter(actor_type="staff", actor_id=str(user.pk), **filters)


def check_reason(identifier: str, purpose: str = "analytics") -> str:
    _, verdict = check_one(identifier=identifier, purpose_key=purpose, as_of=None)
    return str(verdict.reason)


def member(role: str) -> User:
    user = User.objects.create_user(role.lower().replace(" ", "-"), is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def alice(purposes: dict[str, Any]) -> Subject:
    factories.record(PERSON, analytics=True)
    return Subject.objects.get(namespace="account", key=identity.subject_key(PERSON))


def test_restrict_with_a_reason_then_lift_after_confirming(admin_client, admin_user, alice):
    restrict = action_url(alice, "restrict")
    assert admin_client.get(restrict).status_code == 200
    blank = admin_client.post(restrict, {"reason": "  "})
    assert blank.status_code == 200 and blank.context["form"].errors
    assert not Restriction.objects.exists()

    done = admin_client.post(restrict, {"reason": "Contests the accuracy of her address"})
    assert done.status_code == 302 and done["Location"] == person_url(alice)
    period = Restriction.objects.get(subject=alice)
    assert period.ended_at is None and period.started_by == admin_user.get_username()
    assert b"Contests" not in bytes(period.reason_encrypted)
    placed = staff_audits(admin_user, action="rights.restriction_place").get()
    assert placed.detail["subject_key"] == alice.key
    assert check_reason(PERSON) == "restricted"

    page = admin_client.get(person_url(alice))
    html = page.content.decode()
    assert "Restrictions of processing" in html and "Contests the accuracy" in html
    assert [a.key for a in page.context["actions"] if "restrict" in a.key] == ["restriction_lift"]
    assert {s.purpose.key: s.verdict.reason for s in page.context["statuses"]}[
        "analytics"
    ] == "restricted"
    record = admin_client.get(reverse("admin:person_download", args=[alice.pk, "json"])).json()
    assert [p["reason"] for p in record["restrictions"]] == ["Contests the accuracy of her address"]
    # Placing twice is refused with the service's message, on the form.
    again = admin_client.post(restrict, {"reason": "twice"})
    assert again.status_code == 200 and again.context["form"].non_field_errors()

    lift = action_url(alice, "restriction_lift")
    asked = admin_client.post(lift, {})
    assert asked.status_code == 200 and asked.context["confirming"]
    period.refresh_from_db()
    assert period.ended_at is None
    assert admin_client.post(lift, {"confirmed": "yes"}).status_code == 302
    period.refresh_from_db()
    assert period.ended_at is not None
    assert staff_audits(admin_user, action="rights.restriction_lift").count() == 1
    assert check_reason(PERSON) == "granted"
    page = admin_client.get(person_url(alice))
    assert [a.key for a in page.context["actions"] if "restrict" in a.key] == ["restrict"]


def test_change_the_identifier_after_confirming_it(admin_client, admin_user, alice):
    url = action_url(alice, "rectify")
    asked = admin_client.post(url, {"new_subject_id": "alice@example.org"})
    assert asked.status_code == 200 and asked.context["confirming"]
    assert "alice@example.org" in asked.content.decode()  # shown before it is done
    alice.refresh_from_db()
    assert alice.key == identity.subject_key(PERSON)

    done = admin_client.post(url, {"new_subject_id": "alice@example.org", "confirmed": "yes"})
    assert done.status_code == 302 and done["Location"] == person_url(alice)
    alice.refresh_from_db()
    assert alice.key == identity.subject_key("alice@example.org")
    rectified = ConsentEvent.objects.filter(subject=alice).order_by("-seq").first()
    assert (rectified.action, rectified.source, rectified.actor_type) == (
        "rectified",
        "admin",
        "staff",
    )
    audit = staff_audits(admin_user, action="subject.rectify").get()
    assert audit.detail["old_subject_key"] == identity.subject_key(PERSON)
    page = admin_client.get(person_url(alice))
    assert "alice@example.org" in page.content.decode()
    assert page.context["chain"].ok
    find = reverse("admin:person_find")
    assert admin_client.get(find, {"q": "alice@example.org"})["Location"] == person_url(alice)
    assert b"No person has this identifier" in admin_client.get(find, {"q": PERSON}).content
    assert check_reason(PERSON) == "no_consent"


def test_changing_to_an_identifier_in_use_is_refused_on_the_form(admin_client, alice):
    factories.record("bob@example.com", analytics=False)
    refused = admin_client.post(
        action_url(alice, "rectify"), {"new_subject_id": "bob@example.com", "confirmed": "yes"}
    )
    assert refused.status_code == 200
    assert refused.context["form"].non_field_errors()
    alice.refresh_from_db()
    assert alice.key == identity.subject_key(PERSON)
    assert not ConsentEvent.objects.filter(action="rectified").exists()


def test_support_finds_and_opens_requests_but_neither_restricts_nor_rectifies(alice):
    client = staff_sign_in(member("Support"))
    page = client.get(person_url(alice))
    assert page.status_code == 200
    assert [a.key for a in page.context["actions"]] == ["erasure_request", "access_request"]
    assert "restrictions" not in {s.key for s, _ in page.context["sections"]}
    for key, data in [
        ("restrict", {"reason": "x"}),
        ("restriction_lift", {"confirmed": "yes"}),
        ("rectify", {"new_subject_id": "other", "confirmed": "yes"}),
    ]:
        assert client.post(action_url(alice, key), data).status_code == 403, key
    assert not Restriction.objects.exists()
    assert not ConsentEvent.objects.filter(action="rectified").exists()


def test_the_auditor_sees_restrictions_and_acts_on_nothing(alice):
    client = staff_sign_in(member("Auditor"))
    page = client.get(person_url(alice))
    assert page.context["actions"] == []
    assert "restrictions" in {s.key for s, _ in page.context["sections"]}


def test_the_privacy_officer_is_offered_every_action():
    officer = member("Privacy officer")
    for perm in (
        "consent.add_restriction",
        "consent.change_restriction",
        "consent.view_restriction",
        "consent.change_subject",
        "consent.export_person",
        "consent.view_consent_reports",
    ):
        assert officer.has_perm(perm), perm
    support = member("Support")
    assert not support.has_perm("consent.add_restriction")
    assert not support.has_perm("consent.change_subject")
