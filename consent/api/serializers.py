"""Serializers of the consent API, shared by its views."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from consent.identity import MAX_IDENTIFIER_LENGTH
from consent.models import ConsentEvent, GivenBy, IndicationMethod, Source


class SubjectIdField(serializers.CharField):
    """Identifiers are opaque and compared exactly: no trimming, no normalising."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", MAX_IDENTIFIER_LENGTH)
        super().__init__(trim_whitespace=False, allow_blank=False, **kwargs)


class DecisionSerializer(serializers.Serializer):
    purpose = serializers.CharField(max_length=64)
    granted = serializers.BooleanField()
    notice_version = serializers.IntegerField(min_value=1, required=False, allow_null=True)

    def to_internal_value(self, data: Any) -> Any:
        # Strict: "granted" must be a JSON boolean, not "yes" or 1.
        if isinstance(data, dict) and not isinstance(data.get("granted"), bool):
            raise serializers.ValidationError({"granted": ["Must be true or false."]})
        return super().to_internal_value(data)


class ContextSerializer(serializers.Serializer):
    locale = serializers.CharField(max_length=16, required=False, allow_blank=True, default="")
    jurisdiction = serializers.CharField(
        max_length=32, required=False, allow_blank=True, default=""
    )
    page = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


API_SOURCES = [Source.API, Source.BANNER, Source.IMPORT]
INDICATION_METHODS = [m.value for m in IndicationMethod if m not in (IndicationMethod.SYSTEM,)]


class RecordedEventSerializer(serializers.Serializer):
    event_id = serializers.UUIDField(source="id")
    purpose = serializers.CharField(source="purpose.key")
    action = serializers.CharField()
    notice_version = serializers.IntegerField()
    expires_at = serializers.DateTimeField(allow_null=True)


class RecordOutputSerializer(serializers.Serializer):
    receipt_id = serializers.UUIDField(allow_null=True)
    subject_id = serializers.CharField()
    recorded_at = serializers.DateTimeField()
    events = RecordedEventSerializer(many=True)


class HistoryEventSerializer(serializers.ModelSerializer):
    event_id = serializers.UUIDField(source="id")
    purpose = serializers.CharField(source="purpose.key")

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
