"""The admin index as the privacy office's dashboard: its figures, in tables, for a superuser."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.utils import timezone

from consent import services
from consent.ledger.verify import ledger_verify_recorded
from consent.models import LedgerVerification
from governance.actors import Actor
from retention.models import PurgeRun
from retention.services.rights import access_request_create, erasure_request_create

pytestmark = pytest.mark.django_db


def page(admin_client: Any) -> str:
    response = admin_client.get("/admin/")
    assert response.status_code == 200
    return response.content.decode()


def panel(html: str, key: str) -> str:
    found = re.search(rf'id="panel-{key}".*?</table>', html, re.S)
    assert found, f"no table in panel {key!r}"
    return found.group(0)


def row(html: str, key: str, label: str) -> list[str]:
    """The cells of the row headed `label` in the table of panel `key`."""
    found = re.search(rf'<th scope="row">{re.escape(label)}</th>(.*?)</tr>', panel(html, key), re.S)
    assert found, f"no row {label!r}"
    return re.findall(r"<td>(.*?)</td>", found.group(1), re.S)


def people(n: int, prefix: str, **granted: bool) -> None:
    for i in range(n):
        services.consent_record(
            subject_id=f"{prefix}-{i}",
            decisions=[services.DecisionInput(purpose=k, granted=v) for k, v in granted.items()],
            actor=Actor.system("test"),
        )


def test_the_dashboard_shows_its_figures_above_the_app_list(
    admin_client: Any, purposes: dict[str, Any]
) -> None:
    people(20, "yes", analytics=True)
    people(10, "no", analytics=False)
    html = page(admin_client)
    week = (datetime.now(UTC).date() - timedelta(days=datetime.now(UTC).weekday())).isoformat()
    assert row(html, "rates-over-time", week)[0] == "66.7%"  # analytics: 20 of 30
    assert row(html, "gpc-share", "analytics")[:2] == [
        "30",
        "&lt;10",
    ]  # GPC share: events, from GPC
    assert html.index("privacy-dashboard") < html.index('id="content-main"')  # the app list


def test_requests_open_due_soon_and_overdue(admin_client: Any, purposes: dict[str, Any]) -> None:
    now = timezone.now()
    actor = Actor.system("test")
    erasure_request_create(subject_id="late", actor=actor, now=now - timedelta(days=40))
    erasure_request_create(subject_id="soon", actor=actor, now=now - timedelta(days=26))
    erasure_request_create(subject_id="fresh", actor=actor, now=now)
    access_request_create(subject_id="fresh", actor=actor, now=now)
    html = page(admin_client)
    assert row(html, "rights-requests", "Erasure") == ["3", "1", "1"]
    assert row(html, "rights-requests", "Access") == ["1", "0", "0"]


def test_people_awaiting_reconsent_after_a_material_change(
    admin_client: Any, purposes: dict[str, Any]
) -> None:
    people(2, "before", analytics=True, ml_training=True)
    services.notice_version_publish(
        purpose=purposes["analytics"], texts={"en": ("Analytics", "New words.")}, material=True
    )
    people(1, "after", analytics=True)
    html = page(admin_client)
    assert row(html, "reconsent", "analytics") == ["2"]
    assert "ml_training" not in panel(html, "reconsent")


def test_purge_runs_ledger_verification_and_parked_webhooks(
    admin_client: Any, purposes: dict[str, Any]
) -> None:
    html = page(admin_client)
    assert "Never run" in html
    assert row(html, "webhooks", "Parked deliveries") == ["0"]
    PurgeRun.objects.create(status=PurgeRun.Status.FAILED, started_at=timezone.now(), error="boom")
    people(3, "someone", analytics=True)
    ledger_verify_recorded(trigger="test")
    assert LedgerVerification.objects.get().ok
    html = page(admin_client)
    assert "Failed runs in the last 30 days: 1." in html and "boom" in html
    assert row(html, "ledger", "Result") == ["verified"]
    assert row(html, "ledger", "Events") == ["3"]


def test_charts_need_no_inline_script_and_the_library_is_served_locally(
    admin_client: Any, purposes: dict[str, Any]
) -> None:
    html = page(admin_client)
    scripts = re.findall(r"<script([^>]*)>", html)
    assert all("src=" in attrs or 'type="application/json"' in attrs for attrs in scripts)
    assert 'id="chart-rates-over-time" type="application/json"' in html
    assert "chart.umd.min.js" in html and "//cdn" not in html
    assert finders.find("governance/vendor/chartjs/chart.umd.min.js")
    assert finders.find("governance/vendor/chartjs/LICENSE.md")
    assert finders.find("governance/dashboard.js")
