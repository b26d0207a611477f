"""Signed receipts: a compact JWS (ES256, kid) verified by another JOSE library via the JWKS."""

from __future__ import annotations

import json
from io import StringIO

import jwt
import pytest
from django.core.management import call_command

from governance import signing
from governance.models import SigningKey
from tests.conftest import Api

pytestmark = pytest.mark.django_db


def _receipt(api: Api, subject_id: str = "alice") -> dict:
    response = api.post(
        "/api/v1/consents",
        {
            "subject_id": subject_id,
            "decisions": [
                {"purpose": "analytics", "granted": True},
                {"purpose": "ml_training", "granted": False},
            ],
        },
    )
    assert response.status_code == 201
    receipt = api.get(f"/api/v1/receipts/{response.json()['receipt_id']}")
    assert receipt.status_code == 200
    return receipt.json()


def _pyjwt_verify(token: str, jwks: dict) -> dict:
    """Verification with PyJWT, a library the service does not use to sign."""
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    key = jwt.PyJWK(jwk).key
    return jwt.decode(token, key=key, algorithms=["ES256"], options={"verify_aud": False})


def test_receipt_keeps_its_fields_and_adds_record_and_jws(api):
    receipt = _receipt(api)
    assert {"receipt_id", "subject_id", "recorded_at", "events", "kantara"} <= set(receipt)
    record = receipt["record"]
    assert record["record_id"] == receipt["receipt_id"]
    assert record["schema_version"].startswith("ISO/IEC TS 27560")
    assert (
        record["pii_principal_pseudonym"] != "alice"
        and len(record["pii_principal_pseudonym"]) == 64
    )
    assert {e["state"] for e in record["events"]} == {"dpv:ConsentGiven", "dpv:ConsentRefused"}
    header = jwt.get_unverified_header(receipt["jws"])
    assert header["alg"] == "ES256" and header["kid"]


def test_receipt_verifies_with_another_jose_library_through_the_jwks(api, client):
    receipt = _receipt(api)
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200 and "max-age" in response.headers["Cache-Control"]
    jwks = response.json()
    assert all("d" not in k for k in jwks["keys"])  # public halves only
    claims = _pyjwt_verify(receipt["jws"], jwks)
    assert claims == {k: v for k, v in receipt.items() if k != "jws"}


def test_tampered_receipt_does_not_verify(api, client):
    receipt = _receipt(api)
    header, payload, sig = receipt["jws"].split(".")
    forged_body = json.loads(signing.b64url_decode(payload))
    forged_body["events"][0]["action"] = "refused"
    forged = ".".join([header, signing.b64url(json.dumps(forged_body).encode()), sig])
    with pytest.raises(jwt.InvalidSignatureError):
        _pyjwt_verify(forged, client.get("/.well-known/jwks.json").json())


def test_rotation_adds_a_key_and_old_receipts_keep_verifying(api, client):
    old_receipt = _receipt(api, "alice")
    out = StringIO()
    call_command("rotate_signing_key", stdout=out)
    new_receipt = _receipt(api, "bob")
    old_kid = jwt.get_unverified_header(old_receipt["jws"])["kid"]
    new_kid = jwt.get_unverified_header(new_receipt["jws"])["kid"]
    assert old_kid != new_kid and new_kid in out.getvalue()
    jwks = client.get("/.well-known/jwks.json").json()
    assert {k["kid"] for k in jwks["keys"]} == {old_kid, new_kid}
    assert _pyjwt_verify(old_receipt["jws"], jwks)["subject_id"] == "alice"
    assert _pyjwt_verify(new_receipt["jws"], jwks)["subject_id"] == "bob"
    # Fetched again, an old receipt is signed by the current key.
    again = api.get(f"/api/v1/receipts/{old_receipt['receipt_id']}").json()
    assert jwt.get_unverified_header(again["jws"])["kid"] == new_kid


def test_signing_keys_are_stored_encrypted(api):
    _receipt(api)
    key = SigningKey.objects.get()
    blob = bytes(key.private_key_encrypted)
    with pytest.raises(ValueError):
        from cryptography.hazmat.primitives import serialization

        serialization.load_der_private_key(blob, password=None)
    der = signing.private_key_decrypt(blob, kid=key.kid)
    assert der != blob and b"-----BEGIN" not in blob


def test_our_verifier_agrees(api, client):
    receipt = _receipt(api)
    jwks = client.get("/.well-known/jwks.json").json()
    assert signing.jws_verify(receipt["jws"], jwks)["receipt_id"] == receipt["receipt_id"]
