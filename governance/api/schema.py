"""OpenAPI pieces every API view shares: the error shape and its responses."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import serializers

from governance.suppression import SMALL


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    detail = serializers.JSONField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


_DESCRIPTIONS = {
    400: "Invalid request (bad JSON, bad field, unknown purpose).",
    401: "No API key, or an unknown, revoked or expired one.",
    403: "The key lacks the scope, or is of the wrong kind.",
    404: "Not found.",
    409: "Conflict (superseded notice version, reused Idempotency-Key).",
    413: "Request body too large.",
    415: "Unsupported media type.",
    422: "The request is well-formed but breaks a consent rule.",
    429: "Rate limited; see Retry-After.",
    503: "A dependency is down.",
}


def error_responses(*statuses: int) -> dict[int, Any]:
    wanted = {401, 403, 429, *statuses}
    return {
        status: OpenApiResponse(ErrorSerializer, description=_DESCRIPTIONS[status])
        for status in sorted(wanted)
    }


IDEMPOTENCY_KEY = OpenApiParameter(
    name="Idempotency-Key",
    location=OpenApiParameter.HEADER,
    required=False,
    type=str,
    description="Retries with the same key and body return the first answer; "
    "the same key with another body is a 409.",
)


# Counts of the aggregate reports (governance.suppression): an integer, or "<10".
_COUNT_SCHEMA = {"oneOf": [{"type": "integer"}, {"type": "string", "enum": [SMALL]}]}


@extend_schema_field(_COUNT_SCHEMA)
class SuppressedCountField(serializers.Field):
    """An integer, or "<10" when under the small-count threshold."""

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field({**_COUNT_SCHEMA, "nullable": True})
class OptionalSuppressedCountField(SuppressedCountField):
    pass
