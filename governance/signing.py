"""Compact JWS (ES256) made with `cryptography` alone, and the JWKS that verifies it.

Signing keys live in the database, the private half AES-GCM encrypted under the service's
encryption key (with the kid as associated data). The newest unretired key signs; a retired
key stays in the JWKS for SIGNING_KEY_PUBLISH_DAYS after its last signature, so rotation
never breaks what was signed before and is kept as proof.

Every kind of signed document has its own JWS `typ`, set when signing and required when
verifying, so one kind (a receipt) cannot be passed off as another (a dataset card).
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from governance import crypto
from governance.actors import Actor
from governance.audit import audit_record
from governance.models import SigningKey

ALGORITHM = "ES256"

# The JWS `typ` of each kind of signed document (explicit typing, RFC 8725 section 3.11).
TYP_CONSENT_RECEIPT = "consent-receipt+jwt"
TYP_SNAPSHOT_MANIFEST = "snapshot-manifest+jws"
TYP_DATASET_CARD = "dataset-card+jws"
TYPES = frozenset({TYP_CONSENT_RECEIPT, TYP_SNAPSHOT_MANIFEST, TYP_DATASET_CARD})

# A key's last signature is written at most this often (not one UPDATE per receipt); the
# JWKS adds it to the publication window, so a key never leaves before its time.
LAST_SIGNED_RESOLUTION = timedelta(hours=1)


class JwsInvalid(ValueError):
    """The token is malformed, of another kind, or its signature does not verify."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _public_jwk(public: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = public.public_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
    }
    # RFC 7638 thumbprint: the required members, sorted, no whitespace.
    thumbprint = hashlib.sha256(
        json.dumps(jwk, sort_keys=True, separators=(",", ":")).encode()
    ).digest()
    return {**jwk, "kid": b64url(thumbprint), "use": "sig", "alg": ALGORITHM}


def private_key_aad(kid: str) -> bytes:
    return f"signing-key:{kid}".encode()


def private_key_encrypt(der: bytes, *, kid: str) -> bytes:
    return crypto.encrypt(der, aad=private_key_aad(kid))


def private_key_decrypt(ciphertext: bytes | memoryview, *, kid: str) -> bytes:
    return crypto.decrypt(bytes(ciphertext), aad=private_key_aad(kid))


@transaction.atomic
def signing_key_rotate(*, actor: Actor | None = None) -> SigningKey:
    """Adds a new key, which signs from now on; earlier keys are retired but published."""
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = _public_jwk(private.public_key())
    der = private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    now = timezone.now()
    SigningKey.objects.filter(retired_at__isnull=True).update(retired_at=now)
    key = SigningKey.objects.create(
        kid=jwk["kid"],
        algorithm=ALGORITHM,
        private_key_encrypted=private_key_encrypt(der, kid=jwk["kid"]),
        public_jwk=jwk,
    )
    audit_record(
        actor=actor or Actor.system("signing"),
        action="signing_key.rotate",
        target_type="signing_key",
        target_id=key.kid,
    )
    return key


def signing_key_current() -> SigningKey:
    """The key that signs now; the first one is made on first use."""
    key = SigningKey.objects.filter(retired_at__isnull=True).order_by("-created_at", "-id").first()
    return key or signing_key_rotate()


def _last_signed_record(key: SigningKey) -> None:
    now = timezone.now()
    if key.last_signed_at is None or now - key.last_signed_at >= LAST_SIGNED_RESOLUTION:
        SigningKey.objects.filter(pk=key.pk).update(last_signed_at=now)
        key.last_signed_at = now


def jws_sign(payload: dict[str, Any], *, typ: str, key: SigningKey | None = None) -> str:
    """Compact JWS over the canonical JSON of `payload` (sorted keys, no whitespace), with
    `typ` (one of TYPES) in its protected header."""
    if typ not in TYPES:
        raise ValueError(f"unknown JWS typ {typ!r}")
    key = key or signing_key_current()
    private = serialization.load_der_private_key(
        private_key_decrypt(key.private_key_encrypted, kid=key.kid), password=None
    )
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    _last_signed_record(key)
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": typ}
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())
        + "."
        + b64url(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    )
    der_sig = private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der_sig)
    return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def jws_verify(token: str, jwks: dict[str, Any], *, typ: str) -> dict[str, Any]:
    """The payload of `token` if it is a JWS of kind `typ` signed by a key in `jwks`; raises
    JwsInvalid otherwise (the tests verify with another library as well)."""
    try:
        header_b64, payload_b64, sig_b64 = token.split(".")
        header = json.loads(b64url_decode(header_b64))
    except (ValueError, TypeError) as exc:  # wrong part count, bad base64 or JSON
        raise JwsInvalid("not a compact JWS") from exc
    if not isinstance(header, dict) or header.get("alg") != ALGORITHM:
        raise JwsInvalid("unexpected algorithm")
    # RFC 7515: typ is a media type, compared case-insensitively, "application/" optional.
    found = str(header.get("typ", "")).lower().removeprefix("application/")
    if found != typ.lower():
        raise JwsInvalid(f"expected typ {typ!r}, got {header.get('typ')!r}")
    jwk = next((k for k in jwks["keys"] if k["kid"] == header.get("kid")), None)
    if jwk is None:
        raise JwsInvalid("unknown kid")
    public = ec.EllipticCurvePublicNumbers(
        int.from_bytes(b64url_decode(jwk["x"]), "big"),
        int.from_bytes(b64url_decode(jwk["y"]), "big"),
        ec.SECP256R1(),
    ).public_key()
    raw = b64url_decode(sig_b64)
    signature = encode_dss_signature(
        int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    )
    try:
        public.verify(signature, f"{header_b64}.{payload_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise JwsInvalid("bad signature") from exc
    result: dict[str, Any] = json.loads(b64url_decode(payload_b64))
    return result


def jwks() -> dict[str, Any]:
    """The public half of every key that signs now or signed within
    SIGNING_KEY_PUBLISH_DAYS, newest first."""
    cutoff = (
        timezone.now() - timedelta(days=settings.SIGNING_KEY_PUBLISH_DAYS) - LAST_SIGNED_RESOLUTION
    )
    # A retired key with no recorded signature (retired before it signed, or before
    # signatures were recorded) counts from its retirement, the latest it could have signed.
    published = SigningKey.objects.alias(
        last_signature=Coalesce("last_signed_at", "retired_at")
    ).filter(Q(retired_at__isnull=True) | Q(last_signature__gte=cutoff))
    return {"keys": [k.public_jwk for k in published.order_by("-created_at", "-id")]}
