"""OpenAPI pieces every API view shares: the error shape and its responses, the schema
class that names components, and the hook that gives every operation its tag and summary."""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import serializers

from governance.api.common import CONTROL_CHARACTERS, DistinctList
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
    type={"type": "string", "minLength": 1, "maxLength": 255},  # idempotency.MAX_KEY_LENGTH
    description="Retries with the same key and body return the first answer; "
    "the same key with another body is a 409.",
)


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema, naming a view's nested serializers after the view:
    `SnapshotCreateApi.InputSerializer` is `SnapshotCreateRequest` (the Request suffix is
    spectacular's), `SnapshotCreateApi.OutputSerializer` is `SnapshotCreate`, so two views'
    `InputSerializer`s never share one component."""

    def get_serializer_name(self, serializer: Any, direction: Any) -> str:
        outer, _, inner = type(serializer).__qualname__.rpartition(".")
        if not outer or "<locals>" in outer:
            return str(super().get_serializer_name(serializer, direction))
        view = outer.split(".")[-1].removesuffix("Api")
        role = inner.removesuffix("Serializer")
        return view if role in ("Input", "Output") else view + role

    def _map_serializer_field(
        self, field: Any, direction: str, bypass_extensions: bool = False
    ) -> Any:
        """Lists say how many items the server takes: DRF's allow_empty=False, min_length and
        max_length on a ListField or a many=True serializer become minItems and maxItems."""
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if not isinstance(field, serializers.ListSerializer | serializers.ListField):
            return schema
        if not isinstance(schema, dict) or schema.get("type") != "array":
            return schema
        low = max(getattr(field, "min_length", None) or 0, 0 if field.allow_empty else 1)
        if low:
            schema["minItems"] = max(schema.get("minItems", 0), low)
        if isinstance(field, DistinctList):
            schema["uniqueItems"] = True
        high = getattr(field, "max_length", None)
        if high is not None:
            schema["maxItems"] = min(schema.get("maxItems", high), high)
        return schema


# The API's areas: the first pattern that matches an operation's path gives its tag. An
# operation that names its own tags (extend_schema(tags=[...])) keeps them.
AREAS: list[tuple[str, str]] = [
    (r"^/api/v1/banner/|^/api/v1/subject-tokens", "Banner"),
    (r"^/api/v1/checks|^/api/v1/subjects/\{subject_id\}/checks/", "Checks"),
    (r"^/api/v1/(data-uses|decisions)|^/api/v1/subjects/\{subject_id\}/decisions", "Data uses"),
    (r"^/api/v1/snapshots", "Snapshots"),
    (r"^/api/v1/(purposes|consents|receipts)|^/api/v1/subjects/", "Consents"),
    (r"^/api/v1/(erasure-requests|access-requests|restrictions)", "Rights requests"),
    (r"^/api/v1/retention/", "Retention"),
    (r"^/api/v1/webhooks", "Webhooks"),
    (r"^/api/v1/(reports|imports)", "Reports and imports"),
    (r"^/(healthz|readyz|metrics|\.well-known/)", "Operations"),
]

# How a subject identifier is written in a path (consent.identity's rule, as a schema).
SUBJECT_ID_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": f"^[^{CONTROL_CHARACTERS}]*$".replace(r"\x", r"\u00"),
}

_METHODS = {"get", "put", "post", "patch", "delete", "head", "options"}


def _area(path: str) -> str | None:
    return next((tag for pattern, tag in AREAS if re.search(pattern, path)), None)


def _summary(description: str) -> str:
    """The description's first sentence (or clause, before a semicolon), without its stop,
    cut at a word within 100 characters."""
    first = re.split(r"(?<=\.)\s+(?=[A-Z`])|;\s|\n\n", description.strip(), maxsplit=1)[0]
    first = " ".join(first.split()).rstrip(".:")
    if len(first) > 100:
        first = first[:100].rsplit(" ", 1)[0].rstrip(",;:(") + "..."
    return first


def _readable(name: str) -> str:
    if name.endswith("Enum"):  # ConsentRecordInputSourceEnum -> ConsentRecordSourceEnum
        name = re.sub(r"(?<=[a-z])(Input|Request)(?=[A-Z])", "", name)
    for clumsy, plain in (("InputRequest", "Request"), ("RequestRequest", "Request")):
        if name.endswith(clumsy) and len(name) > len(clumsy):
            return name[: -len(clumsy)] + plain
    return name


def postprocess(result: dict[str, Any], generator: Any, request: Any, public: Any) -> dict:
    """What the views do not say one by one: each operation's tag by area and a summary
    from its description; subject identifiers in paths as the server checks them;
    component names without `InputRequest` or `RequestRequest`."""
    auto_tags = {"api", "healthz", "readyz", ".well-known", "metrics"}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in _METHODS:
                continue
            area = _area(path)
            if area and set(operation.get("tags", [])) <= auto_tags:
                operation["tags"] = [area]
            description = operation.get("description", "")
            if description and not operation.get("summary"):
                operation["summary"] = _summary(description)
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "subject_id":
                    parameter["schema"] = dict(SUBJECT_ID_SCHEMA)
    schemas = result.get("components", {}).get("schemas", {})
    renames = {
        old: _readable(old)
        for old in schemas
        if _readable(old) not in schemas or old == _readable(old)
    }
    renames = {old: new for old, new in renames.items() if old != new}
    if renames:
        result["components"]["schemas"] = {renames.get(k, k): v for k, v in schemas.items()}
        result = _renamed_refs(result, renames)
    result["tags"] = [{"name": tag} for tag in dict.fromkeys(tag for _, tag in AREAS)]
    return result


def _renamed_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                prefix, _, name = value.rpartition("/")
                value = f"{prefix}/{renames.get(name, name)}"
            out[key] = _renamed_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_renamed_refs(item, renames) for item in node]
    return node


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
