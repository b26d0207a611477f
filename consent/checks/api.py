"""Check API views: bulk, streamed and single checks (and the lean twin of the single one).

The bulk and stream answers are built without DRF serializers (100,000 ids must be cheap);
the OpenAPI schema still documents their shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import exceptions as drf_exceptions
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from consent.checks import selectors, services
from consent.checks.inputs import as_of_parse
from consent.decisions.services import data_use_for_check
from governance.api.common import (
    Instant,
    JSONErrorsOnly,
    Text,
    actor_of,
    bool_param,
    iso,
    json_response,
)
from governance.api.parsers import json_parse, read_limited
from governance.api.schema import SuppressedCountField, error_responses
from governance.errors import DomainError, InvalidRequest
from governance.models import Scope

# 100,000 ids of up to 255 characters, each with attributes at their limits (5 names of
# 32 characters, values of 64: about 1 KB an id with the id repeated as the key), fit within.
CHECKS_MAX_BODY_BYTES = 128 * 1024 * 1024
READ_BLOCK = 1024 * 1024


class UploadIncomplete(DomainError):
    code = "upload_incomplete"
    status = 400
    message = "The request body ended before its declared length."


def _json_body(request: Request, limit: int) -> Any:
    """Reads and parses the JSON body under `limit`, bypassing request.data.

    DRF's JSON parsing goes through `request.body`, which Django caps at
    DATA_UPLOAD_MAX_MEMORY_SIZE (1 MiB here) whatever the view's own limit.
    """
    media_type = (request.content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise drf_exceptions.UnsupportedMediaType(media_type or "none")
    django_request = request._request
    return json_parse(read_limited(django_request, django_request, limit))


SkewRowSerializer = inline_serializer(
    name="SkewRow",
    fields={
        "value": serializers.CharField(allow_null=True),
        "suppressed": serializers.BooleanField(),
        "candidates": SuppressedCountField(),
        "allowed": SuppressedCountField(),
        "allowed_rate": serializers.FloatField(allow_null=True),
        "share_candidates": serializers.FloatField(allow_null=True),
        "share_allowed": serializers.FloatField(allow_null=True),
        "representation": serializers.FloatField(allow_null=True),
        "weight": serializers.FloatField(allow_null=True),
        "flag": serializers.BooleanField(allow_null=True),
        "reasons": serializers.DictField(child=SuppressedCountField()),
    },
)
SkewSerializer = inline_serializer(
    name="Skew",
    required=False,
    allow_null=True,
    fields={
        "allowed_rate": serializers.FloatField(allow_null=True),
        "by": serializers.DictField(child=serializers.ListField(child=SkewRowSerializer)),
    },
)

CheckResultSerializer = inline_serializer(
    name="CheckResult",
    many=True,
    required=False,
    fields={
        "subject_id": serializers.CharField(),
        "allowed": serializers.BooleanField(),
        "reason": serializers.CharField(),
        "event_id": serializers.UUIDField(allow_null=True),
    },
)


class ChecksApi(APIView):
    required_scope = Scope.CHECKS
    max_body_bytes = CHECKS_MAX_BODY_BYTES

    @extend_schema_serializer(component_name="CheckInput")
    class InputSerializer(serializers.Serializer):
        # Documents the body; the view validates it in plain code (see check_services).
        purpose = Text()
        subject_ids = serializers.ListField(child=Text(), max_length=100_000)
        as_of = Instant(required=False)
        data_use = Text(required=False)
        explain = serializers.BooleanField(required=False, default=False)
        lineage = serializers.BooleanField(required=False, default=False)
        attributes = serializers.DictField(
            child=serializers.DictField(child=serializers.CharField(allow_null=True)),
            required=False,
            help_text="{subject_id: {name: value}}: at most 5 names of up to 32 characters, "
            "values up to 64 characters, at most 50 distinct values per name; ids left out "
            "count under the value null. The answer then carries `skew`; only that aggregate "
            "is stored, never the attributes.",
        )

    @extend_schema(
        operation_id="checks_bulk",
        request=InputSerializer,
        responses={
            200: inline_serializer(
                "CheckAnswer",
                {
                    "decision_id": serializers.UUIDField(),
                    "purpose": serializers.CharField(),
                    "as_of": Instant(),
                    "allowed": serializers.ListField(child=serializers.CharField()),
                    "denied": serializers.ListField(child=serializers.CharField()),
                    "results": CheckResultSerializer,
                    "skew": SkewSerializer,
                },
            ),
            **error_responses(400, 413, 415),
        },
        description="Checks up to 100,000 subject ids for one purpose, now or as of an "
        "instant, and records a Decision (with lineage of the allowed subjects on request).",
    )
    def post(self, request: Request) -> HttpResponse:
        data = _json_body(request, self.max_body_bytes)
        if not isinstance(data, dict):
            raise InvalidRequest("The request body must be a JSON object.")
        rule = selectors.purpose_rule_get(data.get("purpose"))
        data_use = data_use_for_check(data.get("data_use"), rule)
        as_of = as_of_parse(data.get("as_of"))
        explain = bool_param(data.get("explain"), "explain")
        lineage = bool_param(data.get("lineage"), "lineage")
        ids = data.get("subject_ids")
        result = services.checks_run(
            actor=actor_of(request),
            rule=rule,
            ids=ids,  # type: ignore[arg-type]  # validated inside, in a plain loop
            data_use=data_use,
            as_of=as_of,
            lineage=lineage,
            attributes=data.get("attributes"),
        )
        allowed: list[str] = []
        denied: list[str] = []
        for subject_id, verdict in zip(result.ids, result.answers.verdicts, strict=True):
            (allowed if verdict.allowed else denied).append(subject_id)
        body: dict[str, Any] = {
            "decision_id": str(result.decision.id),
            "purpose": rule.key,
            "as_of": iso(result.decision.as_of),
            "allowed": allowed,
            "denied": denied,
        }
        if result.decision.skew is not None:
            body["skew"] = result.decision.skew
        if explain:
            body["results"] = [
                {
                    "subject_id": subject_id,
                    "allowed": verdict.allowed,
                    "reason": verdict.reason,
                    "event_id": verdict.event_id,
                }
                for subject_id, verdict in zip(result.ids, result.answers.verdicts, strict=True)
            ]
        return json_response(body)


def body_blocks(request: Request) -> Iterator[bytes]:
    """The raw body, a block at a time: Content-Length bodies and chunked uploads alike."""
    django_request = request._request
    declared = django_request.META.get("CONTENT_LENGTH") or ""
    if declared.isdigit():
        remaining = int(declared)
        while remaining > 0:
            block = django_request.read(min(READ_BLOCK, remaining))
            if not block:
                raise UploadIncomplete(detail={"missing_bytes": remaining})
            remaining -= len(block)
            yield block
        return
    if "chunked" in django_request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        # Django reads nothing without a Content-Length; the server decodes the chunks.
        stream = django_request.META["wsgi.input"]
        while block := stream.read(READ_BLOCK):
            yield block


class ChecksStreamApi(JSONErrorsOnly, APIView):
    required_scope = Scope.CHECKS

    @extend_schema(
        operation_id="checks_stream",
        parameters=[
            OpenApiParameter("purpose", str, required=True),
            OpenApiParameter("as_of", OpenApiTypes.DATETIME, required=False),
            OpenApiParameter("data_use", str, required=False),
            OpenApiParameter("lineage", bool, required=False),
        ],
        request={"application/x-ndjson": OpenApiTypes.STR},
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(
                OpenApiTypes.STR,
                description='One line per id: {"subject_id", "allowed", "reason"}; then '
                '{"summary": {"decision_id", "allowed", "denied"}} (with "skew" when any line '
                "carried attributes).",
            ),
            **error_responses(400),
        },
        description='NDJSON in ({"subject_id": "..."} a line, optionally with "attributes": '
        "{name: value} as for bulk checks), NDJSON out, any number of ids in bounded memory. "
        "The whole body is read (and answered into a spool) before the first answer byte "
        "is sent, so clients that send everything first work.",
    )
    def post(self, request: Request) -> StreamingHttpResponse:
        params = request.query_params
        rule = selectors.purpose_rule_get(params.get("purpose"))
        data_use = data_use_for_check(params.get("data_use"), rule)
        stream = services.StreamCheck(
            actor=actor_of(request),
            rule=rule,
            data_use=data_use,
            as_of=as_of_parse(params.get("as_of")),
            lineage=bool_param(params.get("lineage"), "lineage"),
        )
        stream.consume(body_blocks(request))
        response = StreamingHttpResponse(stream.answers(), content_type="application/x-ndjson")
        response["X-Decision-Id"] = stream.summary()["decision_id"]
        return response


class SubjectCheckApi(APIView):
    required_scope = Scope.CHECKS

    @extend_schema(
        operation_id="subject_check",
        parameters=[OpenApiParameter("as_of", OpenApiTypes.DATETIME, required=False)],
        responses={
            200: inline_serializer(
                "SubjectCheck",
                {
                    "subject_id": serializers.CharField(),
                    "purpose": serializers.CharField(),
                    "as_of": Instant(),
                    "allowed": serializers.BooleanField(),
                    "reason": serializers.CharField(),
                    "event_id": serializers.UUIDField(allow_null=True),
                },
            ),
            **error_responses(400),
        },
    )
    def get(self, request: Request, subject_id: str, purpose: str) -> HttpResponse:
        """May this subject's data be used for this purpose, now or as of an instant? The answer
        explains itself."""
        return subject_check_response(subject_id, purpose, request.query_params.get("as_of"))


def subject_check_response(subject_id: str, purpose: str, as_of_raw: str | None) -> HttpResponse:
    """The answer to one check. Shared by the DRF view and the lean path
    (governance.api.hot), so both answer alike; raises the same domain errors."""
    now = timezone.now()
    as_of = as_of_parse(as_of_raw, now=now)
    rule, verdict = selectors.check_one(
        identifier=subject_id, purpose_key=purpose, as_of=as_of, now=now
    )
    return json_response(
        {
            "subject_id": subject_id,
            "purpose": rule.key,
            "as_of": iso(as_of or now),  # the instant the answer holds for, given or not
            "allowed": verdict.allowed,
            "reason": verdict.reason,
            "event_id": verdict.event_id,
        }
    )


__all__ = ["ChecksApi", "ChecksStreamApi", "SubjectCheckApi", "subject_check_response"]
