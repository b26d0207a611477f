"""Decisions, their drift (which names people) and a subject's decisions are read only by
the API client that made them, with any of its keys, or by a key with `admin`."""

from __future__ import annotations

from typing import Any

import pytest

from consent import services
from governance import services as governance_services
from governance.actors import Actor
from governance.models import ApiClient
from tests import factories
from tests.conftest import Api, assert_error

pytestmark = pytest.mark.django_db


def _client(*scopes: str) -> tuple[ApiClient, Api]:
    client, key = factories.api_client(scopes=list(scopes))
    return client, Api(key)


def _decide(api: Api, *subjects: str) -> str:
    """A bulk check with lineage; the people then withdraw, so drift names them."""
    for subject in subjects:
        services.consent_record(
            subject_id=subject,
            decisions=[services.DecisionInput(purpose="analytics", granted=True)],
            actor=Actor.system("test"),
        )
    body = {"purpose": "analytics", "subject_ids": list(subjects), "lineage": True}
    response = api.post("/api/v1/checks", body)
    assert response.status_code == 200, response.content
    for subject in subjects:
        services.consent_withdraw(
            subject_id=subject, purposes=["analytics"], actor=Actor.system("test")
        )
    return str(response.json()["decision_id"])


def _reads(api: Api, decision_id: str) -> dict[str, Any]:
    return {
        "detail": api.get(f"/api/v1/decisions/{decision_id}"),
        "drift": api.get(f"/api/v1/decisions/{decision_id}/drift"),
    }


def test_decision_and_drift_are_read_with_any_key_of_the_client_that_made_them(purposes):
    maker, first_key = _client("checks")
    decision_id = _decide(first_key, "alice")
    second_key = Api(governance_services.api_key_issue(client=maker))
    for api in (first_key, second_key):
        reads = _reads(api, decision_id)
        assert reads["detail"].status_code == 200
        assert reads["drift"].json()["drifted"][0]["subject_id"] == "alice"


def test_another_clients_checks_key_gets_404_for_decision_and_drift(purposes):
    _, maker = _client("checks")
    decision_id = _decide(maker, "alice")
    _, stranger = _client("checks", "consent:read", "consent:write", "rights")
    reads = _reads(stranger, decision_id)
    body = assert_error(reads["detail"], 404, "not_found")
    assert "alice" not in str(body)
    assert "alice" not in reads["drift"].content.decode()
    assert_error(reads["drift"], 404, "not_found")
    # The same answer as for a decision that does not exist: ids cannot be probed.
    missing = _reads(stranger, "8d3c9c3e-1d5e-4a59-9a41-0d8b2b6f6b7e")
    assert reads["detail"].json() == missing["detail"].json()


def test_an_admin_only_key_reads_every_clients_decision_and_drift(purposes):
    _, maker = _client("checks")
    decision_id = _decide(maker, "alice")
    _, admin = _client("admin")
    reads = _reads(admin, decision_id)
    assert reads["detail"].status_code == 200
    assert reads["detail"].json()["decision_id"] == decision_id
    assert reads["drift"].json()["drifted"][0]["subject_id"] == "alice"


def test_subject_decisions_lists_the_callers_own_and_every_one_for_admin(purposes):
    _, first = _client("checks")
    _, second = _client("checks")
    mine = _decide(first, "alice")
    theirs = _decide(second, "alice")

    def listed(api: Api) -> list[str]:
        response = api.get("/api/v1/subjects/alice/decisions")
        assert response.status_code == 200, response.content
        return [d["decision_id"] for d in response.json()["decisions"]]

    assert listed(first) == [mine]
    assert listed(second) == [theirs]
    _, admin = _client("admin")
    assert set(listed(admin)) == {mine, theirs}
    _, bystander = _client("checks")
    assert listed(bystander) == []
