"""The dataset consent card: signed like receipts with its own typ (verified with PyJWT, not
the signer), as JSON-LD that pyld expands against the vendored context, and as Markdown."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import jwt
import pytest
from django.utils import timezone
from pyld import jsonld

from consent import services
from consent.decisions.card import CONTEXT_FILE, card_verify
from consent.models import Decision, Purpose
from consent.receipts import receipt_verify
from governance.actors import Actor
from governance.signing import TYP_DATASET_CARD, JwsInvalid
from tests.conftest import assert_error

pytestmark = pytest.mark.django_db

CHECKS = "/api/v1/checks"
DPV = "https://w3id.org/dpv#"
RAI = "http://mlcommons.org/croissant/RAI/"


def grant(subject: str, granted: bool = True) -> None:
    services.consent_record(
        subject_id=subject,
        decisions=[services.DecisionInput(purpose="ml_training", granted=granted)],
        actor=Actor.system("test"),
    )


@pytest.fixture
def decision_id(api) -> str:
    """A bulk check with attributes: 24 allowed, 12 refused, 3 never asked."""
    attributes = {}
    for i in range(36):
        grant(f"p{i}", i % 3 != 0)
        attributes[f"p{i}"] = {"region": "north" if i < 20 else "south", "band": "a|<b>"}
    ids = [*attributes, "x1", "x2", "x3"]
    response = api.post(
        CHECKS, {"purpose": "ml_training", "subject_ids": ids, "attributes": attributes}
    )
    assert response.status_code == 200, response.content
    return response.json()["decision_id"]


def pyjwt_verify(token: str, jwks: dict) -> dict:
    header = jwt.get_unverified_header(token)
    assert header["typ"] == TYP_DATASET_CARD
    key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == header["kid"])).key
    return jwt.decode(token, key=key, algorithms=["ES256"], options={"verify_aud": False})


def test_the_card_states_the_provenance_and_verifies_with_another_library(api, client, decision_id):
    response = api.get(f"/api/v1/decisions/{decision_id}/card")
    assert response.status_code == 200, response.content
    card = response.json()
    jwks = client.get("/.well-known/jwks.json").json()
    assert pyjwt_verify(card["jws"], jwks) == {k: v for k, v in card.items() if k != "jws"}
    assert card_verify(card["jws"], jwks)["decision_id"] == decision_id
    assert card["purpose"] == {
        "key": "ml_training", "name": "Ml Training", "legal_basis": "consent", "dpv_purpose": None
    }  # fmt: skip
    assert card["counts"] == {
        "candidates": 39,
        "allowed": 24,
        "denied": 15,
        "reasons": {"no_consent": "<10", "refused": 12},
    }
    assert card["skew"] == Decision.objects.get(pk=decision_id).skew
    assert card["id_set_digest"] and card["snapshot"] is None
    assert [n["version"] for n in card["notice_versions"]] == [1]
    # Another kind of signed document cannot pass for a card, nor a card for a receipt.
    with pytest.raises(JwsInvalid):
        receipt_verify(card["jws"], jwks)


def test_a_tampered_card_does_not_verify(api, client, decision_id):
    card = api.get(f"/api/v1/decisions/{decision_id}/card").json()
    header, payload, signature = card["jws"].split(".")
    body = json.loads(jwt.utils.base64url_decode(payload))
    body["counts"]["allowed"] = 39
    forged = ".".join(
        [header, jwt.utils.base64url_encode(json.dumps(body).encode()).decode(), signature]
    )
    with pytest.raises(jwt.InvalidSignatureError):
        pyjwt_verify(forged, client.get("/.well-known/jwks.json").json())


def test_notice_versions_in_force_start_at_the_latest_material_one(api, decision_id):
    purpose = Purpose.objects.get(key="ml_training")
    texts = {"en": ("t", "b")}
    past = timezone.now() - timedelta(seconds=1)
    services.notice_version_publish(purpose=purpose, texts=texts, material=True, published_at=past)
    services.notice_version_publish(purpose=purpose, texts=texts, published_at=past)
    ids = ["p1"]
    later = api.post(CHECKS, {"purpose": "ml_training", "subject_ids": ids}).json()
    card = api.get(f"/api/v1/decisions/{later['decision_id']}/card").json()
    assert [(n["version"], n["material"]) for n in card["notice_versions"]] == [
        (2, True), (3, False)
    ]  # fmt: skip
    assert card["skew"] is None


def test_only_its_client_or_an_admin_reads_the_card(api, make_api, decision_id):
    assert_error(make_api("checks").get(f"/api/v1/decisions/{decision_id}/card"), 404, "not_found")
    assert make_api("admin").get(f"/api/v1/decisions/{decision_id}/card").status_code == 200
    assert_error(
        api.get(f"/api/v1/decisions/{decision_id}/card", format="pdf"), 400, "invalid_request"
    )


def test_an_incomplete_decision_has_no_card(api, decision_id):
    Decision.objects.filter(pk=decision_id).update(status=Decision.Status.ABANDONED)
    assert_error(api.get(f"/api/v1/decisions/{decision_id}/card"), 409, "decision_not_complete")


def local_loader(client: Any):
    """pyld's document loader, offline: the card's context from the repository (and checked
    to be what the service serves)."""
    vendored = json.loads(CONTEXT_FILE.read_text())
    served = client.get("/contexts/dataset-card-v1.jsonld")
    assert served.status_code == 200 and served.json() == vendored

    def load(url: str, options: Any = None) -> dict:
        if not url.endswith("/contexts/dataset-card-v1.jsonld"):
            raise jsonld.JsonLdError(f"offline: {url}", "loading document failed")
        return {"contextUrl": None, "documentUrl": url, "document": vendored}

    return load


def test_the_json_ld_card_expands_to_dpv_and_croissant_rai_terms(api, client, decision_id):
    response = api.get(f"/api/v1/decisions/{decision_id}/card", format="jsonld")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/ld+json"
    doc = response.json()
    (expanded,) = jsonld.expand(doc, {"documentLoader": local_loader(client)})
    assert expanded["@type"] == ["https://schema.org/Dataset"]
    assert expanded[f"{DPV}hasLegalBasis"] == [{"@id": f"{DPV}Consent"}]
    assert expanded[f"{DPV}hasPurpose"] == [
        {"@id": "urn:consent-governance:card:purpose:ml_training"}
    ]
    assert "outside [0.8, 1.25]" in expanded[f"{RAI}dataBiases"][0]["@value"] or (
        "within" in expanded[f"{RAI}dataBiases"][0]["@value"]
    )
    assert {v["@value"] for v in expanded[f"{RAI}personalSensitiveInformation"]} == {
        "band", "region"
    }  # fmt: skip
    skew = expanded["urn:consent-governance:card:skew"][0]
    assert skew["@type"] == "@json" and skew["@value"] == Decision.objects.get(pk=decision_id).skew
    counts = expanded["urn:consent-governance:card:consentCounts"][0]["@value"]
    assert counts["allowed"] == 24
    notices = expanded[f"{DPV}hasNotice"]
    assert notices[0]["@type"] == [f"{DPV}Notice"]


def test_the_markdown_card_pastes_into_a_model_card(api, decision_id):
    response = api.get(f"/api/v1/decisions/{decision_id}/card", format="md")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/markdown")
    text = response.content.decode()
    assert text.startswith("## Consent provenance\n")
    assert "| Allowed / denied | 24 / 15 |" in text
    assert "### Who the consent filter leaves out" in text
    # A value from a pipeline cannot break the table or inject HTML.
    assert "| a\\|&lt;b&gt; |" in text and "<b>" not in text
