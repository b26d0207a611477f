"""Check API views: bulk, streamed and single checks, data uses, decisions and drift.

The bulk and stream answers are built without DRF serializers (100,000 ids must be cheap);
the OpenAPI schema still documents their shape.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import exceptions as drf_exceptions
from rest_framework import serializers, status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consent import check_selectors, check_services, checks
from consent.api.views import api_client_of, validated
from consent.models import Decision
from governance.actors import Actor
from governance.api.parsers import json_parse, read_limited
from governance.api.schema import error_responses
from governance.csv import csv_dict_writer
from governance.errors import DomainError, InvalidRequest
from governance.models import ApiClient, Scope

# 100,000 ids of up to 255 characters, JSON-escaped, fit well within this.
CHECKS_MAX_BODY_BYTES = 40 * 1024 * 1024
READ_BLOCK = 1024 * 1024


class UploadIncomplete(DomainError):
    code = "upload_incomplete"
    status = 400
    message = "The request body ended before its declared length."


class JSONErrorsOnly:
    """These views answer NDJSON or CSV themselves; DRF renders only their errors, as JSON.

    Skipping DRF's negotiation keeps `Accept: application/x-ndjson` and `?format=csv` from
    being refused (406/404) before the view runs.
    """

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        renderer = JSONRenderer()
        return renderer, renderer.media_type


def _bool(raw: Any, name: str) -> bool:
    if raw is None or isinstance(raw, bool):
        return bool(raw)
    if isinstance(raw, str) and raw.lower() in ("true", "1", "false", "0", ""):
        return raw.lower() in ("true", "1")
    raise InvalidRequest(f"{name} must be a boolean.", detail={"field": name})


def _json(body: Any, status_code: int = 200) -> HttpResponse:
    return HttpResponse(
        json.dumps(body, ensure_ascii=False), status=status_code, content_type="application/json"
    )


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


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
        purpose = serializers.CharField()
        subject_ids = serializers.ListField(child=serializers.CharField(), max_length=100_000)
        as_of = serializers.DateTimeField(required=False)
        data_use = serializers.CharField(required=False)
        explain = serializers.BooleanField(required=False, default=False)
        lineage = serializers.BooleanField(required=False, default=False)

    @extend_schema(
        operation_id="checks_bulk",
        request=InputSerializer,
        responses={
            200: inline_serializer(
                "CheckAnswer",
                {
                    "decision_id": serializers.UUIDField(),
                    "purpose": serializers.CharField(),
                    "as_of": serializers.DateTimeField(),
                    "allowed": serializers.ListField(child=serializers.CharField()),
                    "denied": serializers.ListField(child=serializers.CharField()),
                    "results": CheckResultSerializer,
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
        rule = checks.purpose_rule_get(data.get("purpose"))
        data_use = check_services.data_use_for_check(data.get("data_use"), rule)
        as_of = checks.as_of_parse(data.get("as_of"))
        explain = _bool(data.get("explain"), "explain")
        lineage = _bool(data.get("lineage"), "lineage")
        ids = data.get("subject_ids")
        result = check_services.checks_run(
            actor=Actor.for_client(api_client_of(request)),
            rule=rule,
            ids=ids,  # type: ignore[arg-type]  # validated inside, in a plain loop
            data_use=data_use,
            as_of=as_of,
            lineage=lineage,
        )
        allowed: list[str] = []
        denied: list[str] = []
        for subject_id, answer in zip(result.ids, result.answers, strict=True):
            (allowed if answer.verdict.allowed else denied).append(subject_id)
        body: dict[str, Any] = {
            "decision_id": str(result.decision.id),
            "purpose": rule.key,
            "as_of": _iso(result.decision.as_of),
            "allowed": allowed,
            "denied": denied,
        }
        if explain:
            body["results"] = [
                {
                    "subject_id": subject_id,
                    "allowed": a.verdict.allowed,
                    "reason": a.verdict.reason,
                    "event_id": a.verdict.event_id,
                }
                for subject_id, a in zip(result.ids, result.answers, strict=True)
            ]
        return _json(body)


def _body_blocks(request: Request) -> Iterator[bytes]:
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
                '{"summary": {"decision_id", "allowed", "denied"}}.',
            ),
            **error_responses(400),
        },
        description='NDJSON in ({"subject_id": "..."} a line), NDJSON out, any number of '
        "ids in bounded memory. The whole body is read (and answered into a spool) before "
        "the first answer byte is sent, so clients that send everything first work.",
    )
    def post(self, request: Request) -> StreamingHttpResponse:
        params = request.query_params
        rule = checks.purpose_rule_get(params.get("purpose"))
        data_use = check_services.data_use_for_check(params.get("data_use"), rule)
        stream = check_services.StreamCheck(
            actor=Actor.for_client(api_client_of(request)),
            rule=rule,
            data_use=data_use,
            as_of=checks.as_of_parse(params.get("as_of")),
            lineage=_bool(params.get("lineage"), "lineage"),
        )
        stream.consume(_body_blocks(request))
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
                    "as_of": serializers.DateTimeField(allow_null=True),
                    "allowed": serializers.BooleanField(),
                    "reason": serializers.CharField(),
                    "event_id": serializers.UUIDField(allow_null=True),
                },
            ),
            **error_responses(400),
        },
    )
    def get(self, request: Request, subject_id: str, purpose: str) -> HttpResponse:
        return subject_check_response(subject_id, purpose, request.query_params.get("as_of"))


def subject_check_lean(
    request: HttpRequest, client: ApiClient, subject_id: str, purpose: str
) -> HttpResponse:
    """SubjectCheckApi's answer for the lean path (governance.api.hot)."""
    return subject_check_response(subject_id, purpose, request.GET.get("as_of"))


def subject_check_response(subject_id: str, purpose: str, as_of_raw: str | None) -> HttpResponse:
    """The answer to one check. Shared by the DRF view and the lean path
    (governance.api.hot), so both answer alike; raises the same domain errors."""
    as_of = checks.as_of_parse(as_of_raw)
    rule, verdict = check_selectors.check_one(
        identifier=subject_id, purpose_key=purpose, as_of=as_of
    )
    return _json(
        {
            "subject_id": subject_id,
            "purpose": rule.key,
            "as_of": _iso(as_of),
            "allowed": verdict.allowed,
            "reason": verdict.reason,
            "event_id": verdict.event_id,
        }
    )


# --- data uses ------------------------------------------------------------------------------


@extend_schema_serializer(component_name="DataUse")
class DataUseOutputSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    purpose = serializers.CharField(source="purpose.key")
    legal_basis = serializers.CharField(source="purpose.legal_basis")
    owner = serializers.CharField()
    description = serializers.CharField()
    data_categories = serializers.ListField(child=serializers.CharField())
    recipients = serializers.ListField(child=serializers.CharField())
    datasets = serializers.ListField(child=serializers.CharField())
    active = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class DataUseListApi(APIView):
    required_scope = Scope.CHECKS

    @extend_schema_serializer(component_name="DataUseInput")
    class InputSerializer(serializers.Serializer):
        key = serializers.SlugField(max_length=64)
        name = serializers.CharField(max_length=200)
        purpose = serializers.CharField(max_length=64)
        owner = serializers.CharField(max_length=200, required=False, default="")
        description = serializers.CharField(required=False, default="", allow_blank=True)
        data_categories = serializers.ListField(
            child=serializers.CharField(max_length=120), required=False, default=list
        )
        recipients = serializers.ListField(
            child=serializers.CharField(max_length=200), required=False, default=list
        )
        datasets = serializers.ListField(
            child=serializers.CharField(max_length=300), required=False, default=list
        )

    @extend_schema(
        operation_id="data_uses_list",
        responses={
            200: inline_serializer(
                "DataUseList", {"data_uses": DataUseOutputSerializer(many=True)}
            ),
            **error_responses(),
        },
    )
    def get(self, request: Request) -> Response:
        rows = check_selectors.data_use_list()
        return Response({"data_uses": DataUseOutputSerializer(rows, many=True).data})

    @extend_schema(
        operation_id="data_uses_create",
        request=InputSerializer,
        responses={201: DataUseOutputSerializer, **error_responses(400, 409, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        data = validated(self.InputSerializer, request.data)
        data_use = check_services.data_use_create(
            key=data["key"],
            name=data["name"],
            purpose_key=data["purpose"],
            owner=data["owner"],
            description=data["description"],
            data_categories=data["data_categories"],
            recipients=data["recipients"],
            datasets=data["datasets"],
            actor=Actor.for_client(api_client_of(request)),
        )
        return Response(DataUseOutputSerializer(data_use).data, status=status.HTTP_201_CREATED)


EXPORT_COLUMNS = [
    "key",
    "name",
    "description",
    "purpose",
    "purpose_name",
    "legal_basis",
    "owner",
    "data_categories",
    "recipients",
    "datasets",
    "active",
    "created_at",
]


def _flat_cell(value: Any) -> Any:
    """Lists (categories, recipients, retention) as one cell of text."""
    if isinstance(value, list):
        return "; ".join(
            ", ".join(f"{k}={v}" for k, v in item.items()) if isinstance(item, dict) else str(item)
            for item in value
        )
    return value


class DataUseExportApi(JSONErrorsOnly, APIView):
    required_scope = Scope.CHECKS

    @extend_schema(
        operation_id="data_uses_export",
        parameters=[OpenApiParameter("format", str, enum=["json", "csv"], required=False)],
        responses={
            (200, "application/json"): OpenApiTypes.OBJECT,
            (200, "text/csv"): OpenApiTypes.STR,
            **error_responses(400),
        },
        description="The records of processing (GDPR Art. 30): each data use with its "
        "purpose, legal basis, owner, data categories, recipients and datasets. Lists are "
        "joined with '; ' in CSV. CSV cells that a spreadsheet would read as a formula "
        "(starting with =, +, -, @, tab or carriage return) are prefixed with '.",
    )
    def get(self, request: Request) -> HttpResponse:
        fmt = request.query_params.get("format", "json")
        if fmt not in ("json", "csv"):
            raise InvalidRequest("format must be json or csv.", detail={"field": "format"})
        rows = check_selectors.data_use_export_rows()
        if fmt == "json":
            return _json({"records_of_processing": rows})
        out = io.StringIO()
        extra = [k for k in (rows[0] if rows else {}) if k not in EXPORT_COLUMNS]
        writer = csv_dict_writer(out, EXPORT_COLUMNS + extra)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _flat_cell(v) for k, v in row.items()})
        response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="records-of-processing.csv"'
        return response


# --- decisions ------------------------------------------------------------------------------

# A decision is read by the client that made it (scope `checks`, any of its keys) or by an
# `admin` key, which reads every client's decisions without needing `checks` too.
DECISION_READERS = (Scope.CHECKS, Scope.ADMIN)


DecisionSerializer = inline_serializer(
    "Decision",
    {
        "decision_id": serializers.UUIDField(),
        "created_at": serializers.DateTimeField(),
        "client": serializers.CharField(),
        "data_use": serializers.CharField(allow_null=True),
        "purpose": serializers.CharField(),
        "as_of": serializers.DateTimeField(),
        "as_of_requested": serializers.BooleanField(),
        "mode": serializers.CharField(),
        "status": serializers.CharField(),
        "total": serializers.IntegerField(),
        "allowed": serializers.IntegerField(),
        "denied": serializers.IntegerField(),
        "id_set_digest": serializers.CharField(),
        "lineage": serializers.BooleanField(),
        "lineage_subjects": serializers.IntegerField(required=False),
        "erased_since": serializers.IntegerField(),
    },
)


def decision_body(decision: Decision, *, lineage_subjects: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "decision_id": str(decision.id),
        "created_at": _iso(decision.created_at),
        "client": decision.actor_label,
        "data_use": decision.data_use.key if decision.data_use else None,
        "purpose": decision.purpose.key,
        "as_of": _iso(decision.as_of),
        "as_of_requested": decision.as_of_requested,
        "mode": decision.mode,
        "status": decision.status,
        "total": decision.total,
        "allowed": decision.allowed_count,
        "denied": decision.denied_count,
        "id_set_digest": decision.id_set_digest,
        "lineage": decision.lineage,
        "erased_since": decision.erased_since,
    }
    if lineage_subjects is not None:
        body["lineage_subjects"] = lineage_subjects
    return body


class DecisionDetailApi(APIView):
    required_scope = DECISION_READERS

    @extend_schema(
        operation_id="decision_detail",
        responses={200: DecisionSerializer, **error_responses(404)},
        description="A decision made by this API client (any of its keys), or by any client "
        "for a key with scope `admin`; 404 for another client's decision.",
    )
    def get(self, request: Request, decision_id: str) -> HttpResponse:
        decision = check_selectors.decision_get(
            decision_id=decision_id, client=api_client_of(request)
        )
        count = check_selectors.decision_lineage_count(decision=decision)
        return _json(decision_body(decision, lineage_subjects=count))


class DecisionDriftApi(APIView):
    required_scope = DECISION_READERS

    @extend_schema(
        operation_id="decision_drift",
        parameters=[
            OpenApiParameter("limit", int, required=False, description="1 to 10000, default 1000"),
            OpenApiParameter("cursor", int, required=False),
        ],
        responses={
            200: inline_serializer(
                "DecisionDrift",
                {
                    "decision_id": serializers.UUIDField(),
                    "purpose": serializers.CharField(),
                    "erased_since": serializers.IntegerField(),
                    "drifted": inline_serializer(
                        "Drifted",
                        {
                            "subject_id": serializers.CharField(allow_null=True),
                            "reason": serializers.CharField(),
                            "event_id": serializers.UUIDField(allow_null=True),
                        },
                        many=True,
                    ),
                    "next_cursor": serializers.IntegerField(allow_null=True),
                },
            ),
            **error_responses(400, 404),
        },
        description="Subjects allowed by the decision and denied now, by identifier, with "
        "the reason: what a model owner must retrain or unlearn. Needs a decision made "
        "with lineage. Only the client that made the decision (any of its keys) or a key "
        "with scope `admin` may read it; 404 otherwise.",
    )
    def get(self, request: Request, decision_id: str) -> HttpResponse:
        decision = check_selectors.decision_get(
            decision_id=decision_id, client=api_client_of(request)
        )
        if not decision.lineage:
            raise InvalidRequest(
                "This decision was made without lineage; drift needs lineage: true.",
                detail={"decision_id": str(decision.id)},
            )
        limit = check_selectors.int_param(
            request.query_params.get("limit"), name="limit", default=1000, low=1, high=10000
        )
        cursor = check_selectors.int_param(
            request.query_params.get("cursor"), name="cursor", default=0, low=0, high=2**62
        )
        drifted, next_cursor = check_selectors.decision_drift(
            decision=decision, limit=limit, cursor=cursor
        )
        return _json(
            {
                "decision_id": str(decision.id),
                "purpose": decision.purpose.key,
                "erased_since": decision.erased_since,
                "drifted": [
                    {"subject_id": d.subject_id, "reason": d.reason, "event_id": d.event_id}
                    for d in drifted
                ],
                "next_cursor": next_cursor,
            }
        )


class SubjectDecisionsApi(APIView):
    required_scope = DECISION_READERS

    @extend_schema(
        operation_id="subject_decisions",
        responses={
            200: inline_serializer(
                "SubjectDecisions",
                {
                    "subject_id": serializers.CharField(),
                    "decisions": serializers.ListField(child=DecisionSerializer),
                },
            ),
            **error_responses(400),
        },
        description="Complete decisions whose lineage includes this subject (newest first, "
        "at most 100): which models used this person's data. Lists this API client's own "
        "decisions; a key with scope `admin` sees every client's.",
    )
    def get(self, request: Request, subject_id: str) -> HttpResponse:
        decisions = check_selectors.decisions_for_subject(
            identifier=subject_id, client=api_client_of(request)
        )
        return _json({"subject_id": subject_id, "decisions": [decision_body(d) for d in decisions]})


__all__ = [
    "ChecksApi",
    "ChecksStreamApi",
    "DataUseExportApi",
    "DataUseListApi",
    "DecisionDetailApi",
    "DecisionDriftApi",
    "SubjectCheckApi",
    "SubjectDecisionsApi",
]
