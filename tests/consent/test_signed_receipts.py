"""Signed receipts: a compact JWS (ES256, kid) verified by another JOSE library via the JWKS."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import jwt
import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from consent.receipts import receipt_verify
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
    assert receipt_verify(receipt["jws"], jwks)["receipt_id"] == receipt["receipt_id"]


# --- one kind of signed document cannot pass for another -------------------------------


def test_receipt_carries_the_consent_receipt_typ(api):
    receipt = _receipt(api)
    assert jwt.get_unverified_header(receipt["jws"])["typ"] == "consent-receipt+jwt"
    assert signing.TYP_CONSENT_RECEIPT == "consent-receipt+jwt"


@pytest.mark.parametrize("other", [signing.TYP_SNAPSHOT_MANIFEST, signing.TYP_DATASET_CARD])
def test_receipt_verifier_refuses_a_jws_of_another_kind(api, client, other):
    receipt = _receipt(api)
    body = {k: v for k, v in receipt.items() if k != "jws"}
    # The same payload, validly signed by the same key, but as another kind of document.
    disguised = signing.jws_sign(body, typ=other)
    jwks = client.get("/.well-known/jwks.json").json()
    assert signing.jws_verify(disguised, jwks, typ=other) == body
    with pytest.raises(signing.JwsInvalid, match="typ"):
        receipt_verify(disguised, jwks)
    # And a receipt does not pass for that other kind.
    with pytest.raises(signing.JwsInvalid, match="typ"):
        signing.jws_verify(receipt["jws"], jwks, typ=other)


def test_a_receipt_with_its_typ_rewritten_does_not_verify(api, client):
    receipt = _receipt(api)
    header, payload, sig = receipt["jws"].split(".")
    swapped = json.loads(signing.b64url_decode(header)) | {"typ": signing.TYP_DATASET_CARD}
    forged = ".".join([signing.b64url(json.dumps(swapped).encode()), payload, sig])
    jwks = client.get("/.well-known/jwks.json").json()
    with pytest.raises(signing.JwsInvalid, match="signature"):
        signing.jws_verify(forged, jwks, typ=signing.TYP_DATASET_CARD)


def test_untyped_and_unknown_kinds_are_neither_signed_nor_verified(api, client):
    with pytest.raises(ValueError, match="typ"):
        signing.jws_sign({"a": 1}, typ="JWT")
    receipt = _receipt(api)
    jwks = client.get("/.well-known/jwks.json").json()
    with pytest.raises(signing.JwsInvalid):
        signing.jws_verify(receipt["jws"], jwks, typ="JWT")
    with pytest.raises(signing.JwsInvalid):
        receipt_verify("not.a-jws", jwks)


# --- retired keys stay published for a configurable time after their last signature ---


def _retired_key(*, last_signed_ago: timedelta | None, retired_ago: timedelta) -> str:
    """A key that signed, then was retired by a rotation; returns its kid."""
    key = signing.signing_key_rotate()
    signing.signing_key_rotate()  # retires it
    now = timezone.now()
    SigningKey.objects.filter(pk=key.pk).update(
        last_signed_at=None if last_signed_ago is None else now - last_signed_ago,
        retired_at=now - retired_ago,
    )
    return key.kid


def _published(client) -> set[str]:
    return {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]}


def test_signing_records_the_keys_last_signature(api):
    _receipt(api)
    key = SigningKey.objects.get()
    assert key.last_signed_at is not None
    assert timezone.now() - key.last_signed_at < timedelta(minutes=5)


def test_retired_key_stays_in_the_jwks_within_the_window_after_its_last_signature(client):
    assert settings.SIGNING_KEY_PUBLISH_DAYS == 2192  # six years
    # Last signed five years ago and retired only now: still a year to go.
    recent = _retired_key(last_signed_ago=timedelta(days=5 * 365), retired_ago=timedelta(0))
    published = _published(client)
    assert recent in published
    current = SigningKey.objects.get(retired_at__isnull=True).kid
    assert current in published


def test_retired_key_leaves_the_jwks_once_the_window_after_its_last_signature_passes(client):
    # Retired only now, but its last signature is more than six years old.
    stale = _retired_key(last_signed_ago=timedelta(days=2192 + 2), retired_ago=timedelta(0))
    kept = _retired_key(last_signed_ago=timedelta(days=2192 - 2), retired_ago=timedelta(0))
    published = _published(client)
    assert stale not in published and kept in published
    current = SigningKey.objects.get(retired_at__isnull=True).kid
    assert current in published


def test_a_key_with_no_recorded_signature_counts_from_its_retirement(client):
    old = _retired_key(last_signed_ago=None, retired_ago=timedelta(days=2192 + 2))
    recent = _retired_key(last_signed_ago=None, retired_ago=timedelta(days=30))
    published = _published(client)
    assert old not in published and recent in published


def test_the_publication_window_is_a_setting(client, settings):
    settings.SIGNING_KEY_PUBLISH_DAYS = 30
    gone = _retired_key(last_signed_ago=timedelta(days=32), retired_ago=timedelta(days=31))
    kept = _retired_key(last_signed_ago=timedelta(days=28), retired_ago=timedelta(days=27))
    published = _published(client)
    assert gone not in published and kept in published
