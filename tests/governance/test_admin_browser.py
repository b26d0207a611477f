"""The privacy office's admin end to end in headless Chromium (issue 13): a privacy officer
signs in through the real form with an authenticator code, reads the dashboard (charts
drawn, tables with figures), finds a person by exact identifier, opens an erasure request
from their page and downloads an access export. Screenshots go to var/screenshots/."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core.cache import cache
from django.db import connections

from consent import services
from consent.banner import services as banner_services
from consent.models import IndicationMethod, Source
from governance.actors import Actor
from retention.models import AccessRequest, ErasureRequest, RequestStatus
from retention.services.rights import access_execute
from tests import factories
from tests.consent.browser import chromium, screenshot, wait_for
from tests.retention.conftest import ML_FEATURES_DDL
from tests.staff import STAFF_PASSWORD, totp_device, totp_fresh_code

# The access export reads the external feature table (tests/settings.py's `features`).
pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "features"]),
    pytest.mark.slow,
]

PERSON = "alice@example.com"
SYSTEM = Actor.system("test")
WEEKS = 6


def _people(prefix: str, n: int, when: datetime, actor: Actor, **granted: bool) -> None:
    banner = actor.type == "api_client"
    for i in range(n):
        services.consent_record(
            subject_id=f"{prefix}-{i}",
            decisions=[services.DecisionInput(purpose=k, granted=v) for k, v in granted.items()],
            actor=actor,
            source=Source.BANNER if banner else Source.API,
            indication_method=IndicationMethod.BUTTON if banner else IndicationMethod.API,
            now=when,
        )


@pytest.fixture
def office() -> Iterator[User]:
    """Some weeks of choices (enough per bucket to show rates), two shops' banners, the
    person staff will look for, and a privacy officer with an authenticator."""
    cache.clear()
    with connections["features"].cursor() as cursor:
        cursor.execute(ML_FEATURES_DDL)
    purposes = factories.seed_purposes()
    now = datetime.now(UTC)
    for week in range(WEEKS):
        when = now - timedelta(weeks=WEEKS - 1 - week)
        _people(f"w{week}-yes", 12 + 2 * week, when, SYSTEM, analytics=True, ml_training=True)
        _people(f"w{week}-mixed", 10, when, SYSTEM, analytics=True, ml_training=False)
        _people(f"w{week}-no", 10, when, SYSTEM, analytics=False, ml_training=False)
    for name, granted in (("Example shop", 14), ("Example app", 10)):
        shop, _ = banner_services.property_create(
            name=name,
            allowed_origins=["https://shop.example"],
            purposes=[purposes["analytics"], purposes["ml_training"]],
            actor=SYSTEM,
        )
        client = Actor.for_client(shop.api_client)
        _people(f"{name}-yes", granted, now, client, analytics=True, ml_training=True)
        _people(f"{name}-no", 10, now, client, analytics=False, ml_training=False)
    factories.record(PERSON, analytics=True, ml_training=False)
    factories.record(PERSON, analytics=False)
    officer = User.objects.create_user("dana", "dana@example.com", STAFF_PASSWORD, is_staff=True)
    officer.groups.add(Group.objects.get(name="Privacy officer"))
    totp_device(officer)
    yield officer


def _sign_in(driver: Any, base: str, officer: User) -> None:
    driver.get(f"{base}/admin/login/?next=/admin/")
    driver.find_element("id", "id_username").send_keys(officer.get_username())
    driver.find_element("id", "id_password").send_keys(STAFF_PASSWORD)
    code = totp_fresh_code(totp_device(officer))  # what the officer's app shows now
    driver.find_element("id", "id_otp_token").send_keys(code)
    driver.find_element("css selector", '#login-form input[type="submit"]').submit()
    wait_for(lambda: driver.find_elements("id", "privacy-dashboard-title"), what="the dashboard")


def _chart_drawn(driver: Any, key: str) -> bool:
    """The panel's canvas holds a Chart.js chart with data, and painted pixels."""
    return bool(
        driver.execute_script(
            """
            const canvas = document.querySelector(`#panel-${arguments[0]} canvas`);
            const chart = canvas && window.Chart && window.Chart.getChart(canvas);
            if (!chart || !chart.data.datasets.length || !canvas.width) return false;
            const pixels = canvas.getContext("2d")
                .getImageData(0, 0, canvas.width, canvas.height).data;
            for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) return true;
            return false;
            """,
            key,
        )
    )


def _table(driver: Any, key: str) -> dict[str, list[str]]:
    """The panel's table: row header -> its cells (as written, whatever the CSS shows)."""
    rows = driver.find_elements("css selector", f"#panel-{key} table tbody tr")
    return {
        row.find_element("tag name", "th").get_attribute("textContent"): [
            td.get_attribute("textContent") for td in row.find_elements("tag name", "td")
        ]
        for row in rows
    }


def _downloaded(folder: Path) -> Path:
    def done() -> Path | None:
        # Chromium names the target file before it writes it: done once no partial file is
        # left and the target has content.
        entries = list(folder.iterdir())
        if any(p.name.endswith(".crdownload") for p in entries):
            return None
        files = [p for p in entries if p.is_file() and p.stat().st_size > 0]
        return files[0] if files else None

    found = wait_for(done, what="the access export to download")
    assert isinstance(found, Path)
    return found


def test_a_privacy_officer_works_through_the_admin(
    live_server: Any, office: User, tmp_path: Path
) -> None:
    base = live_server.url
    with chromium(size=(1280, 800), downloads=tmp_path) as driver:
        _sign_in(driver, base, office)

        # The dashboard: charts drawn by the vendored Chart.js, the figures in tables.
        for key in ("rates-over-time", "rates-per-property"):
            wait_for(functools.partial(_chart_drawn, driver, key), what=f"the {key} chart")
        weeks = _table(driver, "rates-over-time")
        assert len(weeks) == 12
        heads = driver.find_elements("css selector", "#panel-rates-over-time thead th")
        purposes = [th.get_attribute("textContent") for th in heads][1:]
        this_week = dict(zip(purposes, list(weeks.values())[-1], strict=True))
        assert this_week["analytics"].endswith("%") and this_week["ml_training"].endswith("%")
        assert this_week["direct_marketing"] == "n/a"  # nobody was asked: no rate
        shops = _table(driver, "rates-per-property")
        assert set(shops) == {"Example shop", "Example app"}
        assert shops["Example shop"][0] == "58.3%"  # 14 of 24
        assert _table(driver, "gpc-share")["analytics"][0].isdigit()
        assert _table(driver, "rights-requests")["Erasure"] == ["0", "0", "0"]
        screenshot(driver, "admin-dashboard")

        # Find the person by their exact identifier: one match opens their page.
        driver.find_element("id", "dashboard-find-q").send_keys(PERSON)
        driver.find_element("css selector", ".dashboard-find button").click()
        wait_for(lambda: driver.find_elements("css selector", ".person-identifier"), what="page")
        assert driver.find_element("css selector", ".person-identifier").text == PERSON
        reasons = [td.text for td in driver.find_elements("css selector", ".person-reason")]
        assert "refused" in reasons and "withdrawn" in reasons
        screenshot(driver, "admin-person")
        person_page = driver.current_url

        # Open an erasure request from the page: a verification note, then a confirmation.
        driver.find_element("css selector", 'a[href$="/action/erasure_request/"]').click()
        driver.find_element("id", "id_verification_note").send_keys(
            "Passport checked at the front desk by Dana."
        )
        screenshot(driver, "admin-erasure-request")
        driver.find_element("css selector", 'input[type="submit"].default').click()
        driver.find_element("css selector", 'input[value^="Yes"]').click()
        wait_for(lambda: driver.current_url == person_page, what="back to the person")
        assert "Erasure request" in driver.find_element("css selector", ".messagelist").text
        erasure = ErasureRequest.objects.get()
        assert erasure.status == RequestStatus.PENDING and erasure.verification_note_encrypted

        # An access request, run as its worker would, then downloaded from the admin.
        driver.find_element("css selector", 'a[href$="/action/access_request/"]').click()
        driver.find_element("id", "id_verification_note").send_keys("Same visit, same passport.")
        driver.find_element("css selector", 'input[type="submit"].default').click()
        wait_for(lambda: driver.current_url == person_page, what="back to the person")
        request = AccessRequest.objects.get()
        assert access_execute(request_id=request.pk).status == RequestStatus.COMPLETE
        driver.refresh()
        section = driver.find_element("css selector", ".person-requests a[href*='accessrequest']")
        section.click()
        driver.find_element("css selector", 'a[href$="/export.json"]').click()
        export = json.loads(_downloaded(tmp_path).read_text())
        assert export["format"] == "consent-governance-access-export/1"
        assert export["subject"]["identifier"] == PERSON
        assert [e["action"] for e in export["consent_history"]] == [
            "granted",
            "refused",
            "withdrawn",
        ]
