"""Idempotency-Key support: the same key and body replay the first answer, once recorded.

The answer is stored in the same transaction as the write it describes, so a retry either
finds the whole write and its answer or neither. Stored answers are redacted by the caller
(no subject identifier at rest) and restored from the request on replay.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from governance.errors import IdempotencyKeyReused, InvalidRequest
from governance.models import ApiClient, IdempotencyRecord

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    replayed: bool = False


def fingerprint(path: str, payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{path}\n{canonical}".encode()).hexdigest()


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
) -> Answer:
    if key is None:
        return produce()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidRequest(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters.")

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
                        status_code=answer.status,
                        response_body=redact(dict(answer.body)),
                    )
            except IntegrityError as exc:
                # A concurrent request with the same key committed first: undo ours.
                raise _LostRace() from exc
    except _LostRace:
        return replay(IdempotencyRecord.objects.get(client=client, key=key))
    return answer
