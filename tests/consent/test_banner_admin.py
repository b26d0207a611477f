"""Properties are edited in the admin; adding one issues its publishable key, shown once."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from consent.models import BannerText, Property
from governance.models import ApiKey

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, staff_client):
    user = get_user_model().objects.create_superuser("dpo", "dpo@example.com", "pw-for-tests")
    return staff_client(user, client)


def _form(purposes, **extra):
    data = {
        "name": "shop",
        "allowed_origins": '["https://Shop.Example/"]',
        "default_language": "en",
        "purposes": [purposes["analytics"].pk, purposes["targeted_ads"].pk],
        "active": "on",
        "texts-TOTAL_FORMS": "1",
        "texts-INITIAL_FORMS": "0",
        "texts-MIN_NUM_FORMS": "0",
        "texts-MAX_NUM_FORMS": "1000",
        "texts-0-language": "fr",
        "texts-0-title": "Vos choix",
        "texts-0-description": "Nous demandons.",
        "texts-0-accept_all": "Tout accepter",
        "texts-0-reject_all": "Tout refuser",
        "texts-0-customise": "Personnaliser",
        "texts-0-save_choices": "Enregistrer",
    }
    data.update(extra)
    return data


def test_adding_a_property_in_the_admin_issues_its_key_once(staff, purposes):
    response = staff.post("/admin/consent/property/add/", _form(purposes), follow=True)
    assert response.status_code == 200
    prop = Property.objects.get(name="shop")
    assert prop.allowed_origins == ["https://shop.example"]
    assert set(prop.purposes.values_list("key", flat=True)) == {"analytics", "targeted_ads"}
    assert BannerText.objects.get(property=prop).title == "Vos choix"
    assert prop.api_client is not None and prop.api_client.kind == "publishable"
    shown = [str(m) for m in response.context["messages"]]
    key = next(m.split(": ")[-1] for m in shown if "Publishable key" in m)
    assert key.startswith("pk_")
    assert ApiKey.objects.get(client=prop.api_client).prefix == key[:10]
    # The change page never shows it again.
    page = staff.get(f"/admin/consent/property/{prop.pk}/change/").content.decode()
    assert key not in page


def test_admin_refuses_an_origin_with_a_path(staff, purposes):
    data = _form(purposes, allowed_origins='["https://shop.example/checkout"]')
    response = staff.post("/admin/consent/property/add/", data)
    assert response.status_code == 200
    assert not Property.objects.exists()


def test_origins_are_edited_one_per_line(staff, purposes):
    data = _form(purposes, allowed_origins="https://shop.example\r\n\r\nhttp://127.0.0.1:8001/\r\n")
    staff.post("/admin/consent/property/add/", data, follow=True)
    prop = Property.objects.get(name="shop")
    assert prop.allowed_origins == ["http://127.0.0.1:8001", "https://shop.example"]
    page = staff.get(f"/admin/consent/property/{prop.pk}/change/").content.decode()
    assert "http://127.0.0.1:8001\nhttps://shop.example</textarea>" in page
