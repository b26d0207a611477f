"""Subject identifiers: the one rule that validates them, a keyed hash to find them, AES-GCM
to keep them, never plaintext.

The lookup key is HMAC-SHA256(SUBJECT_HASH_KEY, identifier) in hex, so other systems (and
PostgreSQL's pgcrypto: encode(hmac(id, key, 'sha256'), 'hex')) can compute the same key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Any, NoReturn

from django.conf import settings

from consent.errors import InvalidSubjectId
from governance import crypto
from governance.api.common import FORBIDDEN_CHARACTERS
from governance.errors import InvalidRequest

MAX_IDENTIFIER_LENGTH = 255

# Control characters (Unicode category Cc: C0, DEL and C1, so U+0085 too) and UTF-16
# surrogates, which a JSON "\ud800" escape yields and which no UTF-8 encoding (so no keyed
# hash, no ciphertext) can hold: the class every API string refuses (the schema's pattern).
# One compiled class, so many ids cost one C-level scan.
_FORBIDDEN = re.compile(f"[{FORBIDDEN_CHARACTERS}]")


def identifier_ok(value: object) -> bool:
    """The rule every endpoint applies to a subject identifier (single, bulk, stream,
    consent writes, rights requests, subject paths): a non-empty string of at most
    MAX_IDENTIFIER_LENGTH characters, without control characters or lone surrogates."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_IDENTIFIER_LENGTH
        and _FORBIDDEN.search(value) is None
    )


def validate_identifier(identifier: object, *, field: str = "subject_id") -> str:
    """The identifier, or a 400 invalid_subject_id naming the field."""
    if not identifier_ok(identifier):
        raise InvalidSubjectId(
            f"{field} must be a non-empty string of at most {MAX_IDENTIFIER_LENGTH} characters "
            "without control characters or lone surrogates.",
            detail={"field": field},
        )
    return identifier  # type: ignore[return-value]  # identifier_ok proved it a str


def validate_identifiers(
    ids: Any, *, field: str = "subject_ids", line_numbers: Sequence[int] | None = None
) -> None:
    """`identifier_ok` for many ids (bulk and streamed checks) without per-id regex calls:
    a plain loop for type and length, one scan of them all for forbidden characters, and
    the culprit located only when there is one. With `line_numbers`, errors name the NDJSON
    line instead of the list index."""
    if not isinstance(ids, list):
        raise InvalidRequest(f"{field} must be a list of strings.", detail={"field": field})
    for index, value in enumerate(ids):
        if not isinstance(value, str) or not value or len(value) > MAX_IDENTIFIER_LENGTH:
            _bad_id(index, field, line_numbers)
    if _FORBIDDEN.search("".join(ids)):
        for index, value in enumerate(ids):
            if _FORBIDDEN.search(value):
                _bad_id(index, field, line_numbers)


def _bad_id(index: int, field: str, line_numbers: Sequence[int] | None) -> NoReturn:
    message = (
        f"each subject id must be a non-empty string of at most {MAX_IDENTIFIER_LENGTH} "
        "characters without control characters or lone surrogates"
    )
    if line_numbers is not None:
        line = line_numbers[index]
        raise InvalidSubjectId(f"Line {line}: {message}.", detail={"line": line})
    raise InvalidSubjectId(f"{field}[{index}]: {message}.", detail={"field": field, "index": index})


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
