"""Data use and decision API views: the records of processing, a decision, its drift, and
the decisions that used a subject."""

from __future__ import annotations

import io
from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consent.decisions import card as cards
from consent.decisions import selectors, services
from consent.models import Decision
from governance.api.common import (
    Instant,
    JSONErrorsOnly,
    Prose,
    Text,
    actor_of,
    api_client_of,
    int_param,
    iso,
    json_response,
    validated,
)
from governance.api.schema import error_responses
from governance.csv import csv_dict_writer
from governance.errors import InvalidRequest
from governance.models import Scope

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
    created_at = Instant()


class DataUseListApi(APIView):
    required_scope = Scope.CHECKS

    @extend_schema_serializer(component_name="DataUseInput")
    class InputSerializer(serializers.Serializer):
        key = serializers.SlugField(max_length=64)
        name = Text(max_length=200)
        purpose = Text(max_length=64)
        owner = Text(max_length=200, required=False, default="")
        description = Prose(required=False, default="", allow_blank=True)
        data_categories = serializers.ListField(
            child=Text(max_length=120), required=False, default=list
        )
        recipients = serializers.ListField(child=Text(max_length=200), required=False, default=list)
        datasets = serializers.ListField(child=Text(max_length=300), required=False, default=list)

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
        """Lists the registered data uses (records of processing)."""
        rows = selectors.data_use_list()
        return Response({"data_uses": DataUseOutputSerializer(rows, many=True).data})

    @extend_schema(
        operation_id="data_uses_create",
        request=InputSerializer,
        responses={201: DataUseOutputSerializer, **error_responses(400, 409, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        """Registers a data use: a processing activity for one purpose, with owner, categories,
        recipients and datasets."""
        data = validated(self.InputSerializer, request.data)
        data_use = services.data_use_create(
            key=data["key"],
            name=data["name"],
            purpose_key=data["purpose"],
            owner=data["owner"],
            description=data["description"],
            data_categories=data["data_categories"],
            recipients=data["recipients"],
            datasets=data["datasets"],
            actor=actor_of(request),
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
        rows = selectors.data_use_export_rows()
        if fmt == "json":
            return json_response({"records_of_processing": rows})
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
        "created_at": Instant(),
        "client": serializers.CharField(),
        "data_use": serializers.CharField(allow_null=True),
        "purpose": serializers.CharField(),
        "as_of": Instant(),
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
        "model": serializers.CharField(allow_null=True),
        "reasons": serializers.DictField(child=serializers.IntegerField()),
        "skew": serializers.JSONField(allow_null=True),
    },
)


def decision_body(decision: Decision, *, lineage_subjects: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "decision_id": str(decision.id),
        "created_at": iso(decision.created_at),
        "client": decision.actor_label,
        "data_use": decision.data_use.key if decision.data_use else None,
        "purpose": decision.purpose.key,
        "as_of": iso(decision.as_of),
        "as_of_requested": decision.as_of_requested,
        "mode": decision.mode,
        "status": decision.status,
        "total": decision.total,
        "allowed": decision.allowed_count,
        "denied": decision.denied_count,
        "id_set_digest": decision.id_set_digest,
        "lineage": decision.lineage,
        "erased_since": decision.erased_since,
        "model": decision.model or None,
        "reasons": decision.reasons,
        "skew": decision.skew,
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
        decision = selectors.decision_get(decision_id=decision_id, client=api_client_of(request))
        count = selectors.decision_lineage_count(decision=decision)
        return json_response(decision_body(decision, lineage_subjects=count))


CARD_FORMATS = ("json", "jsonld", "md")


class DecisionCardApi(JSONErrorsOnly, APIView):
    required_scope = DECISION_READERS

    @extend_schema(
        operation_id="decision_card",
        parameters=[OpenApiParameter("format", str, enum=list(CARD_FORMATS), required=False)],
        responses={
            (200, "application/json"): OpenApiTypes.OBJECT,
            (200, "application/ld+json"): OpenApiTypes.OBJECT,
            (200, "text/markdown"): OpenApiTypes.STR,
            **error_responses(400, 404, 409),
        },
        description="The dataset consent card of a complete decision: purpose, legal basis, "
        "data use and owner, as_of, counts with the denied reasons, the skew report, the "
        "snapshot's file hash or the id-set digest, the notice versions in force and when it "
        "was issued; `jws` is a compact JWS (typ dataset-card+jws, keys in the JWKS) over "
        "every other field. `format=jsonld`: the same facts in W3C DPV and Croissant RAI "
        "terms; `format=md`: a Markdown section for a model or dataset card. Readable by the "
        "client that made the decision or a key with scope `admin`.",
    )
    def get(self, request: Request, decision_id: str) -> HttpResponse:
        fmt = request.query_params.get("format", "json")
        if fmt not in CARD_FORMATS:
            raise InvalidRequest("format must be json, jsonld or md.", detail={"field": "format"})
        decision = selectors.decision_get(decision_id=decision_id, client=api_client_of(request))
        card = cards.card_signed(decision)
        if fmt == "jsonld":
            context_url = request.build_absolute_uri(cards.CONTEXT_PATH)
            response = json_response(cards.card_jsonld(card, context_url=context_url))
            response["Content-Type"] = "application/ld+json"
            return response
        if fmt == "md":
            return HttpResponse(
                cards.card_markdown(card), content_type="text/markdown; charset=utf-8"
            )
        return json_response(card)


def dataset_card_context(request: Any) -> HttpResponse:
    """The JSON-LD context of the card (vendored in the repository, public, cacheable)."""
    response = HttpResponse(cards.card_context(), content_type="application/ld+json")
    response["Cache-Control"] = "public, max-age=86400"
    response["Access-Control-Allow-Origin"] = "*"
    return response


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
        decision = selectors.decision_get(decision_id=decision_id, client=api_client_of(request))
        if not decision.lineage:
            raise InvalidRequest(
                "This decision was made without lineage; drift needs lineage: true.",
                detail={"decision_id": str(decision.id)},
            )
        limit = int_param(
            request.query_params.get("limit"), name="limit", default=1000, low=1, high=10000
        )
        cursor = int_param(
            request.query_params.get("cursor"), name="cursor", default=0, low=0, high=2**62
        )
        drifted, next_cursor = selectors.decision_drift(
            decision=decision, limit=limit, cursor=cursor
        )
        return json_response(
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
        decisions = selectors.decisions_for_subject(
            identifier=subject_id, client=api_client_of(request)
        )
        return json_response(
            {"subject_id": subject_id, "decisions": [decision_body(d) for d in decisions]}
        )


__all__ = [
    "DataUseExportApi",
    "DataUseListApi",
    "DecisionCardApi",
    "DecisionDetailApi",
    "DecisionDriftApi",
    "SubjectDecisionsApi",
]
