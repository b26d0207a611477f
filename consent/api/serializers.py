"""Serializers of the consent API, shared by its views."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import models
from rest_framework import serializers
from rest_framework.fields import empty

from consent.identity import MAX_IDENTIFIER_LENGTH, identifier_ok, validate_identifier
from consent.models import ConsentEvent, GivenBy, IndicationMethod, Source
from governance.api.common import SINGLE_LINE, Instant, Text, iso


class SubjectIdField(serializers.CharField):
    """Identifiers are opaque and compared exactly: no trimming, no normalising, no
    conversion of numbers. A present value is judged by consent.identity alone, so every
    endpoint refuses the same ids with the same 400 invalid_subject_id; CharField's own
    rules (max_length for the schema) only document it."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", MAX_IDENTIFIER_LENGTH)
        super().__init__(trim_whitespace=False, allow_blank=False, **kwargs)
        self.validators.append(SINGLE_LINE)  # the schema's pattern; run_validation decides

    def run_validation(self, data: Any = empty) -> Any:
        if data is empty:
            return super().run_validation(data)  # required or default, as any field
        return validate_identifier(data, field=self.field_name or "subject_id")


class DecisionSerializer(serializers.Serializer):
    purpose = Text(max_length=64)
    granted = serializers.BooleanField()
    notice_version = serializers.IntegerField(min_value=1, required=False, allow_null=True)

    def to_internal_value(self, data: Any) -> Any:
        # Strict: "granted" must be a JSON boolean, not "yes" or 1.
        if isinstance(data, dict) and not isinstance(data.get("granted"), bool):
            raise serializers.ValidationError({"granted": ["Must be true or false."]})
        return super().to_internal_value(data)


class ContextSerializer(serializers.Serializer):
    locale = Text(max_length=16, required=False, allow_blank=True, default="")
    jurisdiction = Text(max_length=32, required=False, allow_blank=True, default="")
    page = Text(max_length=2000, required=False, allow_blank=True, default="")


API_SOURCES = [Source.API, Source.BANNER, Source.IMPORT]
INDICATION_METHODS = [m.value for m in IndicationMethod if m not in (IndicationMethod.SYSTEM,)]


class RecordedEventSerializer(serializers.Serializer):
    event_id = serializers.UUIDField(source="id")
    purpose = serializers.CharField(source="purpose.key")
    action = serializers.CharField()
    notice_version = serializers.IntegerField()
    expires_at = Instant(allow_null=True)


class RecordOutputSerializer(serializers.Serializer):
    receipt_id = serializers.UUIDField(allow_null=True)
    subject_id = serializers.CharField()
    recorded_at = Instant()
    events = RecordedEventSerializer(many=True)


def record_output(
    *, receipt_id: uuid.UUID | None, subject_id: str, recorded_at: datetime, events: Any
) -> dict[str, Any]:
    """RecordOutputSerializer's output, built directly: every consent write answers with it,
    and the serializer's per-request field copies cost more than the write's own Python.
    tests/consent/test_record_fast_path.py holds the two equal."""
    return {
        "receipt_id": str(receipt_id) if receipt_id is not None else None,
        "subject_id": subject_id,
        "recorded_at": iso(recorded_at),
        "events": [
            {
                "event_id": str(e.id),
                "purpose": e.purpose.key,
                "action": e.action,
                "notice_version": e.notice_version,
                "expires_at": iso(e.expires_at),
            }
            for e in events
        ],
    }


def _plain_text(value: Any, max_length: int, *, blank: bool = False) -> bool:
    """A string a Text field keeps exactly as it is: printable ASCII (no surrogates, no
    control characters), no edge whitespace to trim, within its length."""
    return (
        isinstance(value, str)
        and value.isascii()
        and value.isprintable()
        and len(value) <= max_length
        and (blank or value != "")
        and value == value.strip()
    )


def _plain_int(value: Any, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


_DECISION_KEYS = frozenset({"purpose", "granted", "notice_version"})
_CONTEXT_FIELDS = {"locale": 16, "jurisdiction": 32, "page": 2000}


def record_input_fast(data: Any) -> dict[str, Any] | None:
    """The validated data of ConsentRecordApi.InputSerializer for a plainly valid body, or
    None when the body needs the serializer's full rules (the view then runs it, for its
    answer or its error). Accepts only what the serializer accepts unchanged; the property
    test in tests/consent/test_record_fast_path.py holds the two equal."""
    if not isinstance(data, dict):
        return None
    subject_id = data.get("subject_id")
    if not identifier_ok(subject_id):
        return None
    raw = data.get("decisions")
    if not isinstance(raw, list) or not 1 <= len(raw) <= 100:
        return None
    decisions = []
    for item in raw:
        if not (
            isinstance(item, dict)
            and item.keys() <= _DECISION_KEYS
            and _plain_text(item.get("purpose"), 64)
            and isinstance(item.get("granted"), bool)
        ):
            return None
        decision = {"purpose": item["purpose"], "granted": item["granted"]}
        if "notice_version" in item:
            version = item["notice_version"]
            if version is not None and not _plain_int(version, 1, 2**31 - 1):
                return None
            decision["notice_version"] = version
        decisions.append(decision)
    out: dict[str, Any] = {"subject_id": subject_id, "decisions": decisions}
    for name, choices, default in (
        ("source", API_SOURCES, Source.API),
        ("indication_method", INDICATION_METHODS, IndicationMethod.API),
        ("given_by", GivenBy.values, GivenBy.SUBJECT),
    ):
        value = data.get(name, default)
        if not isinstance(value, str) or value not in choices:
            return None
        out[name] = value
    if "subject_age" in data:
        age = data["subject_age"]
        if age is not None and not _plain_int(age, 0, 150):
            return None
        out["subject_age"] = age
    if "context" in data:
        context = data["context"]
        if not isinstance(context, dict) or not context.keys() <= _CONTEXT_FIELDS.keys():
            return None
        if not all(_plain_text(context[k], _CONTEXT_FIELDS[k], blank=True) for k in context):
            return None
        out["context"] = {k: context.get(k, "") for k in _CONTEXT_FIELDS}
    return out


class HistoryEventSerializer(serializers.ModelSerializer):
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.DateTimeField: Instant,
    }
    event_id = serializers.UUIDField(source="id")
    # Null for a `rectified` event (the identifier changed; no purpose).
    purpose = serializers.CharField(source="purpose.key", allow_null=True)

    class Meta:
        model = ConsentEvent
        fields = [
            "event_id",
            "seq",
            "purpose",
            "action",
            "notice_version",
            "language",
            "effective_at",
            "recorded_at",
            "expires_at",
            "source",
            "indication_method",
            "given_by",
            "receipt_id",
            "hash",
            "prev_hash",
        ]


__all__ = [
    "API_SOURCES",
    "INDICATION_METHODS",
    "ContextSerializer",
    "DecisionSerializer",
    "GivenBy",
    "HistoryEventSerializer",
    "RecordOutputSerializer",
    "RecordedEventSerializer",
    "SubjectIdField",
]
