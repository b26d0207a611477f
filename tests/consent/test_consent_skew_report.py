"""GET /api/v1/reports/consent-skew: the skew report of the service's own population, by
the standing event's context, with the same definitions and suppression as checks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from consent.models import IndicationMethod, Source
from consent.skew import skew_of
from governance.actors import Actor
from tests.conftest import Api, assert_error
from tests.consent.test_consent_rates import make_property, record

pytestmark = pytest.mark.django_db

URL = "/api/v1/reports/consent-skew"


def report(api: Api, **params: Any) -> dict[str, Any]:
    response = api.get(URL, purpose="analytics", **params)
    assert response.status_code == 200, response.content
    return dict(response.json())


def test_by_jurisdiction_matches_the_pure_report_of_the_same_people(api: Api) -> None:
    now = timezone.now() - timedelta(minutes=1)
    record(30, granted=True, when=now, jurisdiction="FR")
    record(20, granted=False, when=now, jurisdiction="FR")
    record(12, granted=True, when=now, jurisdiction="DE")
    record(5, granted=False, when=now, jurisdiction="US-CA")
    record(11, granted=True, when=now)  # no context: null
    body = report(api, by="jurisdiction")
    assert body["by"] == ["jurisdiction"] and body["purpose"] == "analytics"
    people = (
        [({"jurisdiction": "FR"}, True, "granted")] * 30
        + [({"jurisdiction": "FR"}, False, "refused")] * 20
        + [({"jurisdiction": "DE"}, True, "granted")] * 12
        + [({"jurisdiction": "US-CA"}, False, "refused")] * 5
        + [({"jurisdiction": None}, True, "granted")] * 11
    )
    assert body["skew"] == skew_of(people)
    rows = body["skew"]["by"]["jurisdiction"]
    assert [(r["value"], r["suppressed"]) for r in rows] == [
        ("DE", False), ("FR", False), (None, False), (None, True)
    ]  # fmt: skip
    assert "US-CA" not in str(body)


def test_people_streamed_in_chunks_give_the_same_report(api: Api, monkeypatch: Any) -> None:
    from consent.reports import selectors

    now = timezone.now() - timedelta(minutes=1)
    record(23, granted=True, when=now, jurisdiction="FR")
    record(14, granted=False, when=now, jurisdiction="DE")
    at = timezone.now().isoformat()
    whole = report(api, by="jurisdiction", as_of=at)
    monkeypatch.setattr(selectors, "SKEW_CHUNK", 5)  # 37 people: eight chunks, the last short
    assert report(api, by="jurisdiction", as_of=at) == whole
    rows = {r["value"]: r for r in whole["skew"]["by"]["jurisdiction"]}
    assert rows["FR"]["candidates"] == 23 and rows["DE"]["candidates"] == 14


def test_as_of_replays_the_ledger(api: Api) -> None:
    before = timezone.now() - timedelta(hours=2)
    record(10, granted=True, when=before, source=Source.API)
    record(10, granted=True, when=timezone.now() - timedelta(minutes=1), source=Source.IMPORT,
           method=IndicationMethod.IMPORT)  # fmt: skip
    then = report(api, by="source", as_of=(before + timedelta(minutes=1)).isoformat())
    assert [r["value"] for r in then["skew"]["by"]["source"]] == ["api"]
    now = report(api, by="source,notice_version")
    assert [r["value"] for r in now["skew"]["by"]["source"]] == ["api", "import"]
    assert [r["value"] for r in now["skew"]["by"]["notice_version"]] == ["1"]


def test_by_property_names_the_key_that_recorded(api: Api, purposes: dict[str, Any]) -> None:
    prop, _ = make_property(purposes)
    record(10, granted=True, when=timezone.now() - timedelta(minutes=1),
           actor=Actor.for_client(prop.api_client), source=Source.BANNER,
           method=IndicationMethod.BUTTON)  # fmt: skip
    record(10, granted=False, when=timezone.now() - timedelta(minutes=1))
    (shop, backend) = report(api, by="property")["skew"]["by"]["property"]
    assert (shop["value"], shop["allowed"], shop["flag"]) == ("shop", 10, True)
    assert (backend["value"], backend["allowed"], backend["reasons"]) == (
        None, "<10", {"refused": 10}
    )  # fmt: skip


def test_by_takes_spaces_around_names_and_repeats_once(api: Api) -> None:
    assert report(api, by=" source , locale,source")["by"] == ["source", "locale"]


def test_bad_requests_and_scope(api: Api, make_api: Any) -> None:
    assert_error(api.get(URL, purpose="analytics", by="age"), 400, "invalid_request")
    for by in ("", ",", "source,,locale", "source,\tlocale", "source\n"):
        assert_error(api.get(URL, purpose="analytics", by=by), 400, "invalid_request")
    assert_error(api.get(URL, purpose=""), 400, "invalid_request")
    assert_error(api.get(URL, purpose="analytics", as_of=""), 400, "invalid_request")
    assert_error(api.get(URL, purpose="nope"), 400, "unknown_purpose")
    assert_error(api.get(URL), 400, "invalid_request")
    assert_error(api.get(URL, purpose="analytics", as_of="2999-01-01T00:00:00Z"), 400,
                 "invalid_request")  # fmt: skip
    assert_error(make_api("checks").get(URL, purpose="analytics"), 403, "permission_denied")
