"""Consent skew over the API: attributes on bulk and streamed checks, the population of the
issue's "Done when" at 1,000 people, and attributes kept out of the database, the logs and
the spools."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest

from consent import services
from consent.models import Decision
from governance.actors import Actor
from governance.crypto import EphemeralSpool
from tests.conftest import assert_error
from tests.consent import population
from tests.consent.test_skew import assert_weights_restore_candidates
from tests.test_privacy import _all_database_text

pytestmark = pytest.mark.django_db

CHECKS = "/api/v1/checks"
STREAM = "/api/v1/checks/stream"


def grant(subject: str, granted: bool = True, purpose: str = "ml_training") -> None:
    services.consent_record(
        subject_id=subject,
        decisions=[services.DecisionInput(purpose=purpose, granted=granted)],
        actor=Actor.system("test"),
    )


def stream_lines(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, getattr(response, "content", b"")
    raw = b"".join(response.streaming_content)
    return [json.loads(line) for line in raw.decode().splitlines()]


def ndjson(items: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(item) + "\n" for item in items)


@pytest.fixture
def population_1000(purposes) -> tuple[list[str], dict[str, dict[str, str]]]:
    """1,000 people of the synthetic population: those who consent granted ml_training,
    every other one of the rest refused it (the others never answered)."""
    ids, attributes = [], {}
    for i, (attrs, consents) in enumerate(population.people(1_000, seed=None)):
        subject = f"person-{i}"
        ids.append(subject)
        attributes[subject] = attrs
        if consents or i % 2:
            grant(subject, consents)
    return ids, attributes


def test_population_of_1000_through_the_api_matches_the_analytic_values(api, population_1000):
    ids, attributes = population_1000
    response = api.post(
        CHECKS, {"purpose": "ml_training", "subject_ids": ids, "attributes": attributes}
    )
    assert response.status_code == 200, response.content
    body = response.json()
    skew = body["skew"]
    analytic = population.representation()
    for (name, value), expected in analytic.items():
        (row,) = [r for r in skew["by"][name] if r["value"] == value]
        assert abs(row["representation"] - expected) <= 0.02, (name, value, row)
        assert row["flag"] is not (0.8 <= expected <= 1.25)
    assert_weights_restore_candidates(skew)
    assert skew["allowed_rate"] == len(body["allowed"]) / 1_000
    decision = Decision.objects.get(pk=body["decision_id"])
    assert decision.skew == skew
    assert set(decision.reasons) == {"no_consent", "refused"}
    assert sum(decision.reasons.values()) == decision.denied_count


def test_the_stream_summary_carries_the_same_skew_as_the_bulk_check(api, population_1000):
    ids, attributes = population_1000
    bulk = api.post(
        CHECKS, {"purpose": "ml_training", "subject_ids": ids, "attributes": attributes}
    ).json()
    # Attributes on some lines only: the others count under null, as ids left out of a bulk
    # check's attributes do.
    lines = [
        {"subject_id": s, "attributes": attributes[s]} if i % 3 else {"subject_id": s}
        for i, s in enumerate(ids)
    ]
    partial = {s: attributes[s] for i, s in enumerate(ids) if i % 3}
    bulk_partial = api.post(
        CHECKS, {"purpose": "ml_training", "subject_ids": ids, "attributes": partial}
    ).json()
    streamed = stream_lines(
        api.post(
            f"{STREAM}?purpose=ml_training",
            raw=ndjson(lines),
            content_type="application/x-ndjson",
        )
    )
    summary = streamed[-1]["summary"]
    assert summary["skew"] == bulk_partial["skew"] != bulk["skew"]
    assert Decision.objects.get(pk=summary["decision_id"]).skew == summary["skew"]


def test_checks_without_attributes_carry_no_skew(api, purposes):
    grant("ann")
    body = api.post(CHECKS, {"purpose": "ml_training", "subject_ids": ["ann", "bob"]}).json()
    assert "skew" not in body
    decision = Decision.objects.get(pk=body["decision_id"])
    assert decision.skew is None and decision.reasons == {"no_consent": 1}
    lines = stream_lines(
        api.post(
            f"{STREAM}?purpose=ml_training",
            raw=ndjson([{"subject_id": "ann"}]),
            content_type="application/x-ndjson",
        )
    )
    assert "skew" not in lines[-1]["summary"]
    assert api.get(f"/api/v1/decisions/{body['decision_id']}").json()["skew"] is None


@pytest.mark.parametrize(
    ("attributes", "limit"),
    [
        ({"ann": {f"n{i}": "v" for i in range(6)}}, "names"),
        ({"ann": {"band": "v" * 65}}, "value_length"),
        ({"ann": {"band": 3}}, "value_length"),
        ({"ann": ["band"]}, "shape"),
    ],
)
def test_bulk_attributes_beyond_the_limits_are_a_400(api, purposes, attributes, limit):
    response = api.post(
        CHECKS, {"purpose": "ml_training", "subject_ids": ["ann"], "attributes": attributes}
    )
    body = assert_error(response, 400, "invalid_attributes")
    assert body["error"]["detail"]["limit"] == limit
    assert not Decision.objects.exists()


def test_bulk_attributes_must_be_an_object(api, purposes):
    response = api.post(CHECKS, {"purpose": "ml_training", "subject_ids": [], "attributes": []})
    assert_error(response, 400, "invalid_attributes")


def test_a_stream_line_beyond_the_limits_is_a_400_naming_it(api, purposes):
    lines = [{"subject_id": f"s{i}", "attributes": {"town": f"t{i}"}} for i in range(52)]
    response = api.post(
        f"{STREAM}?purpose=ml_training", raw=ndjson(lines), content_type="application/x-ndjson"
    )
    body = assert_error(response, 400, "invalid_attributes")
    assert body["error"]["detail"] == {"limit": "values", "max": 50, "line": 51}
    assert not Decision.objects.exists()


def test_attributes_reach_neither_the_database_nor_the_logs_nor_the_spools(
    api, purposes, caplog, monkeypatch
):
    marker = f"probe-{uuid.uuid4().hex}"
    written: list[bytes] = []
    original = EphemeralSpool.write

    def spy(self: EphemeralSpool, data: bytes) -> None:
        written.append(bytes(data))
        original(self, data)

    monkeypatch.setattr(EphemeralSpool, "write", spy)
    caplog.set_level(logging.DEBUG)
    for i in range(30):
        grant(f"p{i}", i % 2 == 0)
    # Each person's own value: every one a small cell, so none may leave the process.
    attributes = {f"p{i}": {"postcode": f"{marker}-{i}"} for i in range(30)}
    ids = list(attributes)
    bulk = api.post(
        CHECKS, {"purpose": "ml_training", "subject_ids": ids, "attributes": attributes}
    )
    assert bulk.status_code == 200
    lines = [{"subject_id": s, "attributes": a} for s, a in attributes.items()]
    streamed = stream_lines(
        api.post(
            f"{STREAM}?purpose=ml_training",
            raw=ndjson(lines),
            content_type="application/x-ndjson",
        )
    )
    # A refused request too (the error path logs).
    refused = api.post(
        CHECKS,
        {"purpose": "ml_training", "subject_ids": ["p1"], "attributes": {"p1": {marker: "x"}}},
    )
    assert refused.status_code == 400
    assert written, "the stream spooled its ids"
    assert all(marker.encode() not in block for block in written)
    assert marker not in caplog.text
    assert all(marker not in json.dumps([r.msg, r.args], default=str) for r in caplog.records)
    assert not [t for t in _all_database_text() if marker in t]
    for skew in (bulk.json()["skew"], streamed[-1]["summary"]["skew"]):
        (row,) = skew["by"]["postcode"]
        assert row["suppressed"] and row["candidates"] == 30
