"""The ledger's hash chain: each event hashes its own fields, its proof context's digest and
the previous event's hash for the same subject. One function computes it for writing and
for verification, so the two can never disagree.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

GENESIS = ""
# One encoder for every hash: json.dumps with these options would build a new one per call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds")


def event_hash(
    *,
    event_id: str,
    subject_key: str,
    seq: int,
    purpose_key: str,
    notice_version: int,
    language: str,
    action: str,
    effective_at: datetime,
    recorded_at: datetime,
    expires_at: datetime | None,
    source: str,
    indication_method: str,
    given_by: str,
    actor_type: str,
    actor_id: str,
    receipt_id: str,
    context_digest: str,
    prev_hash: str,
) -> str:
    fields: dict[str, Any] = {
        "v": 1,
        "event_id": event_id,
        "subject_key": subject_key,
        "seq": seq,
        "purpose": purpose_key,
        "notice_version": notice_version,
        "language": language,
        "action": action,
        "effective_at": _ts(effective_at),
        "recorded_at": _ts(recorded_at),
        "expires_at": _ts(expires_at),
        "source": source,
        "indication_method": indication_method,
        "given_by": given_by,
        "actor_type": actor_type,
        "actor_id": actor_id,
        "receipt_id": receipt_id,
        "context_digest": context_digest,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(_CANONICAL.encode(fields).encode()).hexdigest()


# The ConsentEvent columns the hash covers, by attribute name, besides its ids.
HASHED_COLUMNS = (
    "seq",
    "notice_version",
    "language",
    "action",
    "effective_at",
    "recorded_at",
    "expires_at",
    "source",
    "indication_method",
    "given_by",
    "actor_type",
    "actor_id",
    "context_digest",
    "prev_hash",
)


def event_hash_of(row: Mapping[str, Any], *, subject_key: str, purpose_key: str) -> str:
    """event_hash of an event's columns by attribute name (`id`, `receipt_id` and the
    hashed ones): a row from `.values()`, or a model instance's `vars()`."""
    return event_hash(
        event_id=str(row["id"]),
        subject_key=subject_key,
        purpose_key=purpose_key,
        receipt_id=str(row["receipt_id"]),
        **{name: row[name] for name in HASHED_COLUMNS},
    )


def context_digest(
    *,
    receipt_id: str,
    ip_hash: str,
    user_agent_hash: str,
    page: str,
    locale: str,
    jurisdiction: str,
) -> str:
    canonical = json.dumps(
        {
            "receipt_id": receipt_id,
            "ip_hash": ip_hash,
            "user_agent_hash": user_agent_hash,
            "page": page,
            "locale": locale,
            "jurisdiction": jurisdiction,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
