"""The API's contract beyond what schemathesis checks: every operation is tagged, summarised
and described; /api/ answers in the error shape whatever the method; one format for time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from django.test import Client
from rest_framework.exceptions import ValidationError

from governance.api.common import InstantText, Prose, Text, iso, iso_duration
from governance.api.schema import AREAS
from tests import factories

pytestmark = pytest.mark.django_db

RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def _schema() -> dict[str, Any]:
    response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_every_operation_has_an_area_a_summary_and_a_description():
    areas = {tag for _, tag in AREAS}
    for path, operations in _schema()["paths"].items():
        for method, operation in operations.items():
            label = f"{method.upper()} {path}"
            assert operation.get("tags") and set(operation["tags"]) <= areas, label
            assert operation.get("summary"), label
            assert operation.get("description"), label


def test_component_names_read_well():
    names = _schema()["components"]["schemas"]
    clumsy = [n for n in names if n in ("Input", "Output", "InputRequest") or "RequestRequest" in n]
    assert not clumsy
    assert not [n for n in names if n.endswith("InputRequest")]


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
def test_an_unknown_api_path_is_a_json_404_whatever_the_method(method):
    response = getattr(Client(enforce_csrf_checks=True), method)("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_instants_are_rfc3339_utc_with_microseconds():
    assert iso(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000000Z"
    paris = timezone(timedelta(hours=1))
    assert iso(datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=paris)) == "2026-01-02T02:04:05.000007Z"
    assert iso(datetime(743, 1, 1, tzinfo=UTC)) == "0743-01-01T00:00:00.000000Z"
    assert iso(None) is None


@pytest.mark.parametrize(
    "duration, text",
    [
        (timedelta(days=30), "P30D"),
        (timedelta(hours=12), "PT12H"),
        (timedelta(days=1, minutes=1, seconds=1, microseconds=500_000), "P1DT1M1.5S"),
        (timedelta(0), "PT0S"),
    ],
)
def test_durations_are_iso_8601(duration, text):
    assert iso_duration(duration) == text


def test_the_single_check_answers_the_instant_it_used(api, purposes):
    factories.record("someone", analytics=True)
    body = api.get("/api/v1/subjects/someone/checks/analytics").json()
    assert RFC3339_Z.match(body["as_of"])
    given = api.get(
        "/api/v1/subjects/someone/checks/analytics", as_of="2020-01-01T00:00:00Z"
    ).json()
    assert given["as_of"] == "2020-01-01T00:00:00.000000Z"


def test_answers_write_instants_and_durations_one_way(api, purposes):
    recorded = api.post(
        "/api/v1/consents",
        {"subject_id": "s-1", "decisions": [{"purpose": "analytics", "granted": True}]},
    ).json()
    assert RFC3339_Z.match(recorded["recorded_at"])
    assert all(RFC3339_Z.match(e["expires_at"]) for e in recorded["events"])
    policies = api.get("/api/v1/retention/policies").json()["policies"]
    assert policies and all(re.match(r"^P(\d+D)?(T[\d.HMS]+)?$", p["keep_for"]) for p in policies)
    ttl = {p["key"]: p["consent_ttl"] for p in api.get("/api/v1/purposes").json()["purposes"]}
    assert ttl["direct_marketing"] == "P30D" and ttl["security"] is None


@pytest.mark.parametrize("value", [0, 1.5, True, ["a"], {"a": 1}])
def test_text_fields_take_json_strings_only(value):
    for field in (Text(), Prose(), InstantText()):
        with pytest.raises(ValidationError):
            field.run_validation(value)


@pytest.mark.parametrize("value", ["a\n", "a\x00", "\x85", "a\ud800"])
def test_text_refuses_control_characters_even_a_final_line_break(value):
    with pytest.raises(ValidationError):
        Text().run_validation(value)


@pytest.mark.parametrize("value", ["", " ", "\t\n\r", "\u3000\u00a0", "a\x0b"])
def test_non_blank_prose_needs_a_character_other_than_whitespace(value):
    with pytest.raises(ValidationError):
        Prose(non_blank=True).run_validation(value)


def test_non_blank_prose_matches_what_strip_leaves():
    field = Prose(non_blank=True)
    for value in ("x", " x\n", "\ufeff", "a\tb"):
        assert field.run_validation(value) == value and value.strip()
