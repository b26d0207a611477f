"""The ledger's hash input (consent.ledger.chain): the fast writer of the canonical JSON
gives exactly json.dumps' text for every kind of value, so no hash ever changes."""

from __future__ import annotations

import enum
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from consent.ledger import chain
from consent.models import Action, Source


class Version(enum.IntEnum):
    ONE = 1


def _fields(**overrides):
    values = {
        "event_id": str(uuid.uuid4()),
        "subject_key": "ab" * 32,
        "seq": 3,
        "purpose_key": "analytics",
        "notice_version": 2,
        "language": "en",
        "action": Action.GRANTED,
        "effective_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "recorded_at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        "expires_at": None,
        "source": Source.IMPORT,
        "indication_method": "import",
        "given_by": "subject",
        "actor_type": "system",
        "actor_id": "",
        "receipt_id": str(uuid.uuid4()),
        "context_digest": "",
        "prev_hash": "cd" * 32,
    }
    return {**values, **overrides}


def _reference(fields):
    text = json.dumps(chain._fields(**fields), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"expires_at": datetime(2027, 1, 1, tzinfo=UTC)},
        {"effective_at": datetime(2020, 5, 6, 7, 8, 9, 10, tzinfo=timezone(timedelta(hours=-5)))},
        {"actor_id": 'quote " back \\ slash / tab \t nl \n nul \x00'},
        {"language": "é", "actor_id": "用户😀", "purpose_key": "\u2028\u2029"},
        {"seq": 0, "notice_version": 10**12},
        # Types the fast path leaves to json.dumps: both must still agree.
        {"seq": True},
        {"notice_version": Version.ONE},
        {"actor_id": 7},
        {"expires_at": "2027-01-01"},
    ],
)
def test_the_hash_input_is_json_dumps_text(overrides):
    fields = _fields(**overrides)
    try:
        expected = _reference(fields)
    except (TypeError, AttributeError) as error:
        with pytest.raises(type(error)):
            chain.event_hash(**fields)
        return
    assert chain.event_hash(**fields) == expected


def test_event_hash_of_reads_a_row_as_event_hash():
    fields = _fields()
    row = {
        "id": uuid.UUID(fields["event_id"]),
        "receipt_id": uuid.UUID(fields["receipt_id"]),
        **{name: fields[name] for name in chain.HASHED_COLUMNS},
    }
    assert chain.event_hash_of(
        row, subject_key=fields["subject_key"], purpose_key=fields["purpose_key"]
    ) == _reference(fields)
