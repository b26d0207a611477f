"""The consent write's fast paths agree with the serializers they stand in for.

POST /api/v1/consents validates a plainly valid body without DRF's serializer and renders
its answer without RecordOutputSerializer (both for speed, see docs/decisions/0007). These
properties hold the shortcuts to the serializers: the fast input path accepts only what the
serializer accepts, with the same validated data, and otherwise defers to it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent.api.serializers import RecordOutputSerializer, record_input_fast, record_output
from consent.api.views import ConsentRecordApi

texts = st.one_of(
    st.sampled_from(["analytics", "ads", " analytics", "analytics ", "", " ", "a\x00b", "é"]),
    st.text(max_size=80),
    st.text(alphabet="abcxyz_-", min_size=60, max_size=70),
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 300), st.floats(allow_nan=False), texts
)
notice_versions = st.one_of(scalars, st.integers(-(2**40), 2**40))
decisions = st.fixed_dictionaries(
    {"purpose": st.one_of(texts, scalars)},
    optional={
        "granted": st.one_of(st.booleans(), scalars),
        "notice_version": notice_versions,
        "extra": scalars,
    },
)
contexts = st.one_of(
    scalars,
    st.fixed_dictionaries(
        {},
        optional={
            "locale": st.one_of(texts, scalars),
            "jurisdiction": texts,
            "page": st.one_of(texts, st.text(alphabet="a/", min_size=1990, max_size=2010)),
            "other": scalars,
        },
    ),
)
bodies = st.one_of(
    scalars,
    st.lists(scalars, max_size=2),
    st.fixed_dictionaries(
        {},
        optional={
            "subject_id": st.one_of(texts, scalars, st.text(min_size=250, max_size=260)),
            "decisions": st.one_of(
                scalars, st.lists(decisions, max_size=3), st.lists(decisions, min_size=101)
            ),
            "source": st.one_of(st.sampled_from(["api", "banner", "import", "gpc"]), scalars),
            "indication_method": st.one_of(
                st.sampled_from(["api", "button", "pre_ticked", "system", "clicked"]), scalars
            ),
            "given_by": st.one_of(st.sampled_from(["subject", "guardian"]), scalars),
            "subject_age": st.one_of(scalars, st.integers(-2, 160)),
            "context": contexts,
            "unknown": scalars,
        },
    ),
)


# Bodies that are valid more often than not, each part sometimes just over a line.
near_valid = st.fixed_dictionaries(
    {
        "subject_id": st.one_of(
            st.sampled_from(["u-1", "user@example.com", " padded ", "x" * 255, "x" * 256]),
            st.sampled_from(["u-2", "u-3", "device:abc"]),
            st.text(min_size=1, max_size=20),
        ),
        "decisions": st.lists(
            st.fixed_dictionaries(
                {
                    "purpose": st.sampled_from(
                        ["analytics", "ads", "ml_training", "x" * 64, "x" * 65, " ads"]
                    ),
                    "granted": st.one_of(
                        st.booleans(), st.booleans(), st.sampled_from([1, "true", None])
                    ),
                },
                optional={"notice_version": st.one_of(st.none(), st.integers(-1, 3), st.just(2.0))},
            ),
            min_size=0,
            max_size=2,
        ),
    },
    optional={
        "source": st.sampled_from(["api", "banner", "gpc", ""]),
        "indication_method": st.sampled_from(["api", "button", "pre_ticked", "system"]),
        "given_by": st.sampled_from(["subject", "guardian", "parent"]),
        "subject_age": st.one_of(st.none(), st.integers(-1, 151), st.just(True)),
        "context": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {},
                optional={
                    "locale": st.sampled_from(["de-DE", "", " en", "x" * 17]),
                    "page": st.sampled_from(["https://a.example/", "/ü", "\x00"]),
                    "jurisdiction": st.sampled_from(["EU", "US-CA", "x" * 33]),
                },
            ),
        ),
    },
)


def _serializer_answer(body: Any) -> dict[str, Any] | None:
    serializer = ConsentRecordApi.InputSerializer(data=body)
    return dict(serializer.validated_data) if serializer.is_valid() else None


def _plain(value: Any) -> Any:
    """Validated data as plain JSON-like values (OrderedDicts and str enums flattened)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(bodies, near_valid))
def test_fast_input_accepts_only_what_the_serializer_accepts_unchanged(body: Any) -> None:
    fast = record_input_fast(body)
    if fast is None:
        return  # the view runs the serializer: its answer or its error, as before
    assert _plain(fast) == _plain(_serializer_answer(body))


@pytest.mark.parametrize(
    "body",
    [
        {"subject_id": "u-1", "decisions": [{"purpose": "analytics", "granted": True}]},
        {
            "subject_id": "user@example.com",
            "decisions": [
                {"purpose": "analytics", "granted": False, "notice_version": 3},
                {"purpose": "ads", "granted": True, "notice_version": None},
            ],
            "source": "banner",
            "indication_method": "button",
            "given_by": "guardian",
            "subject_age": 12,
            "context": {"locale": "de-DE", "page": "https://shop.example/checkout"},
        },
        {"subject_id": "u-2", "decisions": [{"purpose": "ads", "granted": True}], "x": 1},
    ],
)
def test_fast_input_takes_the_common_bodies(body: dict[str, Any]) -> None:
    fast = record_input_fast(body)
    assert fast is not None
    assert _plain(fast) == _plain(_serializer_answer(body))


def _event(expires_at: datetime | None, action: str = "granted") -> SimpleNamespace:
    return SimpleNamespace(
        id=uuid.uuid4(),
        purpose=SimpleNamespace(key="analytics"),
        action=action,
        notice_version=2,
        expires_at=expires_at,
    )


@pytest.mark.parametrize(
    "receipt_id, recorded_at, events",
    [
        (
            uuid.uuid4(),
            datetime(2026, 11, 29, 14, 0, 0, 123456, tzinfo=UTC),
            [_event(datetime(2027, 11, 29, 14, 0, tzinfo=UTC)), _event(None, "refused")],
        ),
        (
            uuid.uuid4(),
            datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
            [_event(datetime(2026, 6, 1, 0, 0, 0, 1, tzinfo=timezone(timedelta(hours=-5))))],
        ),
        (None, datetime(2026, 11, 29, tzinfo=UTC), []),
    ],
)
def test_record_output_renders_what_the_serializer_renders(
    receipt_id: uuid.UUID | None, recorded_at: datetime, events: list[Any]
) -> None:
    by_serializer = RecordOutputSerializer(
        {
            "receipt_id": receipt_id,
            "subject_id": "u-1",
            "recorded_at": recorded_at,
            "events": events,
        }
    ).data
    direct = record_output(
        receipt_id=receipt_id, subject_id="u-1", recorded_at=recorded_at, events=events
    )
    assert direct == _plain(dict(by_serializer))


valid_decisions: st.SearchStrategy[list[dict[str, Any]]] = st.lists(
    st.fixed_dictionaries(
        {"purpose": st.from_regex(r"\A[a-z][a-z0-9_]{0,63}\Z"), "granted": st.booleans()},
        optional={"notice_version": st.one_of(st.none(), st.integers(1, 2**31 - 1))},
    ),
    min_size=1,
    max_size=100,
    unique_by=lambda d: str(d["purpose"]),
)
valid_bodies = st.fixed_dictionaries(
    {
        "subject_id": st.text(
            alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=255
        ),
        "decisions": valid_decisions,
    },
    optional={
        "source": st.sampled_from(["api", "banner", "import"]),
        "indication_method": st.sampled_from(["api", "button", "checkbox", "pre_ticked"]),
        "given_by": st.sampled_from(["subject", "guardian"]),
        "subject_age": st.one_of(st.none(), st.integers(0, 150)),
        "context": st.fixed_dictionaries(
            {},
            optional={
                "locale": st.sampled_from(["", "de-DE", "en"]),
                "jurisdiction": st.sampled_from(["", "EU", "US-CA"]),
                "page": st.from_regex(r"\Ahttps://[a-z]{1,20}\.example/[a-z/]{0,40}\Z"),
            },
        ),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_bodies)
def test_fast_input_takes_valid_bodies_as_the_serializer_does(body: dict[str, Any]) -> None:
    fast = record_input_fast(body)
    assert fast is not None
    assert _plain(fast) == _plain(_serializer_answer(body))
