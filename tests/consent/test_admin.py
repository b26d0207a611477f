"""The admin as privacy staff use it: adding notice versions, looking subjects up."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from consent.models import NoticeVersion
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(staff_client) -> Client:
    return staff_client(get_user_model().objects.create_superuser("dpo", "dpo@example.com", "pw"))


def notice_form(purpose_id: int, texts: list[tuple[str, str, str]], material: bool) -> dict:
    data = {
        "purpose": purpose_id,
        "published_at_0": "2026-01-01",
        "published_at_1": "00:00:00",
        "texts-TOTAL_FORMS": len(texts),
        "texts-INITIAL_FORMS": 0,
        "texts-MIN_NUM_FORMS": 1,
        "texts-MAX_NUM_FORMS": 1000,
    }
    if material:
        data["material"] = "on"
    for i, (lang, title, text) in enumerate(texts):
        data.update(
            {f"texts-{i}-language": lang, f"texts-{i}-title": title, f"texts-{i}-body": text}
        )
    return data


def test_staff_add_a_material_notice_version_with_texts(staff):
    purpose = factories.purpose("analytics")
    response = staff.post(
        "/admin/consent/noticeversion/add/",
        notice_form(
            purpose.pk, [("en", "Analytics", "New words"), ("de", "Analyse", "Neu")], material=True
        ),
    )
    assert response.status_code == 302, response.content[:2000]
    latest = NoticeVersion.objects.filter(purpose=purpose).order_by("-version").first()
    assert latest.version == 2 and latest.material
    assert {t.language for t in latest.texts.all()} == {"en", "de"}
    assert len(latest.text_hash) == 64


def test_a_notice_version_needs_a_text(staff):
    purpose = factories.purpose("analytics")
    response = staff.post("/admin/consent/noticeversion/add/", notice_form(purpose.pk, [], False))
    assert response.status_code == 200  # the form again, with an error
    assert NoticeVersion.objects.filter(purpose=purpose).count() == 1


def test_subject_lookup_by_identifier(staff):
    factories.seed_purposes()
    factories.record("alice@example.com", analytics=True)
    found = staff.get("/admin/consent/subject/", {"q": "alice@example.com"})
    assert b"1 subject" in found.content
    missing = staff.get("/admin/consent/subject/", {"q": "alice@example.co"})
    assert b"0 subjects" in missing.content
