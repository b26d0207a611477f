"""Compact JWS (ES256) made with `cryptography` alone, and the JWKS that verifies it.

Signing keys live in the database, the private half AES-GCM encrypted under the service's
encryption key (with the kid as associated data). The newest unretired key signs; every
key stays in the JWKS, so rotation never breaks what was signed before.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from django.db import transaction
from django.utils import timezone

from governance import crypto
from governance.actors import Actor
from governance.audit import audit_record
from governance.models import SigningKey

ALGORITHM = "ES256"


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


def jws_sign(payload: dict[str, Any], *, key: SigningKey | None = None) -> str:
    """Compact JWS over the canonical JSON of `payload` (sorted keys, no whitespace)."""
    key = key or signing_key_current()
    private = serialization.load_der_private_key(
        private_key_decrypt(key.private_key_encrypted, kid=key.kid), password=None
    )
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": "JWT"}
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())
        + "."
        + b64url(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    )
    der_sig = private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der_sig)
    return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def jws_verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """Our own check (the tests verify with another library as well)."""
    header_b64, payload_b64, sig_b64 = token.split(".")
    header = json.loads(b64url_decode(header_b64))
    if header.get("alg") != ALGORITHM:
        raise ValueError("unexpected algorithm")
    jwk = next((k for k in jwks["keys"] if k["kid"] == header.get("kid")), None)
    if jwk is None:
        raise ValueError("unknown kid")
    public = ec.EllipticCurvePublicNumbers(
        int.from_bytes(b64url_decode(jwk["x"]), "big"),
        int.from_bytes(b64url_decode(jwk["y"]), "big"),
        ec.SECP256R1(),
    ).public_key()
    raw = b64url_decode(sig_b64)
    signature = encode_dss_signature(
        int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    )
    public.verify(signature, f"{header_b64}.{payload_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    result: dict[str, Any] = json.loads(b64url_decode(payload_b64))
    return result


def jwks() -> dict[str, Any]:
    """Every signing key's public half, newest first."""
    return {"keys": [k.public_jwk for k in SigningKey.objects.order_by("-created_at", "-id")]}
