"""Data uses are edited in the admin (and audited); decisions are read-only history there."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from consent.checks import services as check_services
from consent.checks.selectors import purpose_rule_get
from consent.models import DataUse, Decision
from governance.actors import Actor
from governance.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(staff_client) -> Client:
    return staff_client(get_user_model().objects.create_superuser("dpo", "dpo@example.com", "pw"))


def test_staff_add_a_data_use_in_the_admin_and_it_is_audited(staff, purposes):
    response = staff.post(
        "/admin/consent/datause/add/",
        {
            "key": "churn-model",
            "name": "Churn model",
            "purpose": purposes["ml_training"].pk,
            "owner": "data-science",
            "description": "",
            "data_categories": '["usage"]',
            "recipients": "[]",
            "datasets": '["warehouse.events"]',
            "active": "on",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    data_use = DataUse.objects.get(key="churn-model")
    assert data_use.datasets == ["warehouse.events"]
    audit = AuditEvent.objects.get(action="data_use.create")
    assert (audit.actor_type, audit.target_id) == ("staff", "churn-model")


def test_decisions_are_listed_read_only(staff, purposes):
    check_services.checks_run(
        actor=Actor.system("test"), rule=purpose_rule_get("analytics"), ids=["a", "b"]
    )
    decision = Decision.objects.get()
    assert staff.get("/admin/consent/decision/").status_code == 200
    page = staff.get(f"/admin/consent/decision/{decision.pk}/change/")
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert staff.get("/admin/consent/decision/add/").status_code == 403
