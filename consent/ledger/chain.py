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
# The reference encoding of every hash: json.dumps with these options (one encoder, not a
# new one per call).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds")


def _fields(
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
) -> dict[str, Any]:
    """What an event's hash covers (version 1), as the JSON object hashed."""
    return {
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


# The same JSON text, written straight: _fields' keys in sorted order, each string through
# json's own C escaping (ensure_ascii, as _CANONICAL). A tenth of json.dumps' cost; any
# value of another type than the fast path expects goes through _CANONICAL instead, so the
# text (and the hash) cannot differ.
_TEMPLATE = (
    '{"action":%s,"actor_id":%s,"actor_type":%s,"context_digest":%s,"effective_at":%s,'
    '"event_id":%s,"expires_at":%s,"given_by":%s,"indication_method":%s,"language":%s,'
    '"notice_version":%s,"prev_hash":%s,"purpose":%s,"receipt_id":%s,"recorded_at":%s,'
    '"seq":%s,"source":%s,"subject_key":%s,"v":1}'
)
_string = json.encoder.encode_basestring_ascii  # TypeError for anything but a str


def _integer(value: int) -> str:
    if type(value) is not int:  # bool, IntEnum: JSON writes them its own way
        raise TypeError(type(value).__name__)
    return str(value)


def _time(value: datetime | None) -> str:
    if value is None:
        return "null"
    if not isinstance(value, datetime):
        raise TypeError(type(value).__name__)
    # isoformat writes digits, '-', ':', 'T', '.' and '+' only: nothing to escape.
    return '"' + value.isoformat(timespec="microseconds") + '"'


def _hash_input(
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
    try:
        return _TEMPLATE % (
            _string(action),
            _string(actor_id),
            _string(actor_type),
            _string(context_digest),
            _time(effective_at),
            _string(event_id),
            _time(expires_at),
            _string(given_by),
            _string(indication_method),
            _string(language),
            _integer(notice_version),
            _string(prev_hash),
            _string(purpose_key),
            _string(receipt_id),
            _time(recorded_at),
            _integer(seq),
            _string(source),
            _string(subject_key),
        )
    except TypeError:
        return _CANONICAL.encode(
            _fields(
                event_id=event_id,
                subject_key=subject_key,
                seq=seq,
                purpose_key=purpose_key,
                notice_version=notice_version,
                language=language,
                action=action,
                effective_at=effective_at,
                recorded_at=recorded_at,
                expires_at=expires_at,
                source=source,
                indication_method=indication_method,
                given_by=given_by,
                actor_type=actor_type,
                actor_id=actor_id,
                receipt_id=receipt_id,
                context_digest=context_digest,
                prev_hash=prev_hash,
            )
        )


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
    """The SHA-256 of the event's canonical JSON (_fields, keys sorted, no spaces)."""
    text = _hash_input(
        event_id,
        subject_key,
        seq,
        purpose_key,
        notice_version,
        language,
        action,
        effective_at,
        recorded_at,
        expires_at,
        source,
        indication_method,
        given_by,
        actor_type,
        actor_id,
        receipt_id,
        context_digest,
        prev_hash,
    )
    return hashlib.sha256(text.encode()).hexdigest()


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
    text = _hash_input(
        str(row["id"]),
        subject_key,
        row["seq"],
        purpose_key,
        row["notice_version"],
        row["language"],
        row["action"],
        row["effective_at"],
        row["recorded_at"],
        row["expires_at"],
        row["source"],
        row["indication_method"],
        row["given_by"],
        row["actor_type"],
        row["actor_id"],
        str(row["receipt_id"]),
        row["context_digest"],
        row["prev_hash"],
    )
    return hashlib.sha256(text.encode()).hexdigest()


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
