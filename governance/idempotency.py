"""Idempotency-Key support: the same key and body replay the first answer, once recorded.

The answer is stored in the same transaction as the write it describes, so a retry either
finds the whole write and its answer or neither. Stored answers are redacted by the caller
(no subject identifier at rest) and restored from the request on replay. Request hashes
(and scoped keys) are HMACs under a key of their own derived from SUBJECT_HASH_KEY: a plain
hash over a body naming a person could be reversed by hashing a list of likely identifiers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import IntegrityError, transaction

from governance.errors import IdempotencyKeyReused, InvalidRequest
from governance.models import ApiClient, IdempotencyRecord

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    replayed: bool = False


@lru_cache(maxsize=4)
def _derive_key(secret: str) -> bytes:
    # Its own key, so these hashes cannot be matched against subject keys or proof hashes.
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"governance.idempotency"
    ).derive(secret.encode())


def _mac(message: bytes) -> str:
    return hmac.new(_derive_key(settings.SUBJECT_HASH_KEY), message, hashlib.sha256).hexdigest()


def fingerprint(path: str, payload: Any) -> str:
    """The keyed hash that tells a retry (same path and body) from a reuse of its key."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _mac(f"{path}\n{canonical}".encode())


def scoped_key(key: str, scope: Sequence[str]) -> str:
    """The stored key of an Idempotency-Key that is unique only within `scope` (a browser's
    device and origin, say): two scopes never share a record, and it names nobody."""
    return "scoped:" + _mac(json.dumps([*scope, key], separators=(",", ":")).encode())


class _LostRace(Exception):
    pass


def run_idempotent(
    *,
    client: ApiClient,
    key: str | None,
    request_hash: str,
    produce: Callable[[], Answer],
    redact: Callable[[dict[str, Any]], dict[str, Any]] = lambda body: body,
    restore: Callable[[dict[str, Any]], dict[str, Any]] = lambda body: body,
    subject_key: str | None = None,
    scope: Sequence[str] = (),
) -> Answer:
    """`subject_key` is the keyed hash of the subject the request names (erasure removes
    the record with the subject); with `scope`, the key is stored as `scoped_key`."""
    if key is None:
        return produce()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidRequest(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters.")
    if scope:
        key = scoped_key(key, scope)

    def replay(record: IdempotencyRecord) -> Answer:
        if record.request_hash != request_hash:
            raise IdempotencyKeyReused()
        return Answer(record.status_code, restore(dict(record.response_body)), replayed=True)

    existing = IdempotencyRecord.objects.filter(client=client, key=key).first()
    if existing is not None:
        return replay(existing)
    try:
        with transaction.atomic():
            answer = produce()
            try:
                with transaction.atomic():
                    IdempotencyRecord.objects.create(
                        client=client,
                        key=key,
                        request_hash=request_hash,
                        subject_key=subject_key,
                        status_code=answer.status,
                        response_body=redact(dict(answer.body)),
                    )
            except IntegrityError as exc:
                # A concurrent request with the same key committed first: undo ours.
                raise _LostRace() from exc
    except _LostRace:
        return replay(IdempotencyRecord.objects.get(client=client, key=key))
    return answer
