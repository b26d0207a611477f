"""Subject identifiers: a keyed hash to find them, AES-GCM to keep them, never plaintext.

The lookup key is HMAC-SHA256(SUBJECT_HASH_KEY, identifier) in hex, so other systems (and
PostgreSQL's pgcrypto: encode(hmac(id, key, 'sha256'), 'hex')) can compute the same key.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

from django.conf import settings

from governance import crypto
from governance.errors import InvalidRequest

MAX_IDENTIFIER_LENGTH = 255


def validate_identifier(identifier: object, *, field: str = "subject_id") -> str:
    if not isinstance(identifier, str) or not identifier:
        raise InvalidRequest(f"{field} must be a non-empty string.", detail={"field": field})
    if len(identifier) > MAX_IDENTIFIER_LENGTH:
        raise InvalidRequest(
            f"{field} must be at most {MAX_IDENTIFIER_LENGTH} characters.", detail={"field": field}
        )
    if any(unicodedata.category(ch) == "Cc" for ch in identifier):
        raise InvalidRequest(
            f"{field} must not contain control characters.", detail={"field": field}
        )
    return identifier


def subject_key(identifier: str) -> str:
    key = settings.SUBJECT_HASH_KEY.encode()
    return hmac.new(key, identifier.encode("utf-8"), hashlib.sha256).hexdigest()


def encrypt_identifier(identifier: str, *, key: str) -> bytes:
    return crypto.encrypt(identifier.encode("utf-8"), aad=key.encode())


def decrypt_identifier(ciphertext: bytes | memoryview | None, *, key: str) -> str | None:
    if ciphertext is None:
        return None
    return crypto.decrypt(bytes(ciphertext), aad=key.encode()).decode("utf-8")


def keyed_hash(value: str, *, purpose: str) -> str:
    """A keyed hash for proof context (IP, user agent): proves equality, reveals nothing."""
    key = (settings.SUBJECT_HASH_KEY + ":" + purpose).encode()
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()
