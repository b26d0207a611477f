"""Consent API views: thin, each parses, calls one service or selector, serializes."""

from __future__ import annotations

import uuid
from typing import Any

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

from consent import rectification, selectors, services
from consent.api.common import client_context, decision_inputs
from consent.api.serializers import (
    API_SOURCES,
    INDICATION_METHODS,
    ContextSerializer,
    DecisionSerializer,
    HistoryEventSerializer,
    RecordOutputSerializer,
    SubjectIdField,
    record_input_fast,
    record_output,
)
from consent.identity import subject_key
from consent.models import GivenBy, Subject
from consent.receipts import receipt_signed
from governance.api.common import (
    DistinctList,
    Instant,
    Text,
    actor_of,
    api_client_of,
    iso,
    iso_duration,
    validated,
)
from governance.api.schema import IDEMPOTENCY_KEY, error_responses
from governance.errors import InvalidRequest, NotFound
from governance.idempotency import Answer, fingerprint, run_idempotent
from governance.models import ApiClient, Scope


def record_answer(result: services.RecordResult, subject_id: str, status_code: int) -> Answer:
    body = record_output(
        receipt_id=result.receipt_id,
        subject_id=subject_id,
        recorded_at=result.recorded_at,
        events=result.events,
    )
    return Answer(status_code, body)


def _without_subject(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "subject_id"}


class PurposeListApi(APIView):
    required_scope = None

    @extend_schema_serializer(component_name="Purpose")
    class OutputSerializer(serializers.Serializer):
        key = serializers.CharField()
        name = serializers.CharField()
        description = serializers.CharField()
        legal_basis = serializers.CharField()
        dpv_concept = serializers.CharField()
        tcf_purpose_ids = serializers.ListField(child=serializers.IntegerField())
        data_categories = serializers.ListField(child=serializers.CharField())
        consent_ttl = serializers.CharField(allow_null=True, help_text="ISO 8601, e.g. P365D")
        consent_ttl_days = serializers.FloatField(allow_null=True)
        gpc_opt_out = serializers.BooleanField()
        notice_version = serializers.IntegerField(allow_null=True)

    @extend_schema(
        operation_id="purposes_list",
        responses={
            200: inline_serializer("PurposeList", {"purposes": OutputSerializer(many=True)}),
            **error_responses(),
        },
    )
    def get(self, request: Request) -> Response:
        """Lists the active purposes with their legal basis, current notice version and consent
        lifetime."""
        rows = [
            {
                "key": p.key,
                "name": p.name,
                "description": p.description,
                "legal_basis": p.legal_basis,
                "dpv_concept": p.dpv_concept,
                "tcf_purpose_ids": p.tcf_purpose_ids,
                "data_categories": p.data_categories,
                "consent_ttl": iso_duration(p.consent_ttl),
                "consent_ttl_days": p.consent_ttl.total_seconds() / 86400
                if p.consent_ttl
                else None,
                "gpc_opt_out": p.gpc_opt_out,
                "notice_version": version,
            }
            for p, version in selectors.purpose_list_active()
        ]
        return Response({"purposes": self.OutputSerializer(rows, many=True).data})


class ConsentRecordApi(APIView):
    required_scope = Scope.CONSENT_WRITE

    @extend_schema_serializer(component_name="ConsentRecordInput")
    class InputSerializer(serializers.Serializer):
        subject_id = SubjectIdField()
        decisions = DecisionSerializer(many=True, allow_empty=False, max_length=100)  # type: ignore[call-arg]
        source = serializers.ChoiceField(  # type: ignore[assignment]
            choices=API_SOURCES, required=False, default="api"
        )
        indication_method = serializers.ChoiceField(
            choices=INDICATION_METHODS, required=False, default="api"
        )
        given_by = serializers.ChoiceField(
            choices=GivenBy.values, required=False, default=GivenBy.SUBJECT
        )
        subject_age = serializers.IntegerField(
            min_value=0, max_value=150, required=False, allow_null=True
        )
        context = ContextSerializer(required=False)  # type: ignore[assignment]

    @extend_schema(
        operation_id="consents_record",
        request=InputSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: RecordOutputSerializer, **error_responses(400, 409, 413, 415, 422)},
    )
    def post(self, request: Request) -> Response:
        """Records a subject's decisions, one event per purpose, and answers with the receipt id."""
        data = record_input_fast(request.data) or validated(self.InputSerializer, request.data)
        subject_id = data["subject_id"]
        answer = run_idempotent(
            client=api_client_of(request),
            key=request.headers.get("Idempotency-Key"),
            request_hash=fingerprint(request.path, request.data),
            produce=lambda: consent_record_answer(request, api_client_of(request), data),
            redact=_without_subject,
            restore=lambda body: {**body, "subject_id": subject_id},
            subject_key=subject_key(subject_id),
        )
        headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
        return Response(answer.body, status=answer.status, headers=headers)


def consent_record_answer(request: Any, client: ApiClient, data: dict[str, Any]) -> Answer:
    """Records validated input for an API client; the 201 answer. Shared by the DRF view
    and its lean twin (consent.api.lean), so both write and answer alike."""
    result = services.consent_record(
        subject_id=data["subject_id"],
        decisions=decision_inputs(data["decisions"]),
        actor=services.Actor.for_client(client),
        source=data["source"],
        indication_method=data["indication_method"],
        given_by=data["given_by"],
        subject_age=data.get("subject_age"),
        context=client_context(request, data.get("context")),
    )
    return record_answer(result, data["subject_id"], status.HTTP_201_CREATED)


class SubjectConsentsApi(APIView):
    required_scope = Scope.CONSENT_READ

    @extend_schema_serializer(component_name="SubjectConsent")
    class ConsentSerializer(serializers.Serializer):
        purpose = serializers.CharField()
        status = serializers.CharField()
        notice_version = serializers.IntegerField()
        since = Instant()
        expires_at = Instant(allow_null=True)
        current_notice_version = serializers.IntegerField()
        reconsent_required = serializers.BooleanField(
            help_text="A material notice version was published after this grant: checks deny "
            "it (reason notice_superseded) until the person grants again."
        )

    @extend_schema(
        operation_id="subject_consents",
        responses={
            200: inline_serializer(
                "SubjectConsents",
                {"subject_id": serializers.CharField(), "consents": ConsentSerializer(many=True)},
            ),
            **error_responses(400),
        },
    )
    def get(self, request: Request, subject_id: str) -> Response:
        """A subject's current consent per purpose: status, notice version, since when and until
        when."""
        return Response(subject_consents_body(subject_id))


def subject_consents_body(subject_id: str) -> dict[str, Any]:
    """The answer of GET /subjects/{id}/consents, as SubjectConsentsApi.ConsentSerializer
    writes it. Shared by the DRF view and its lean twin (consent.api.lean), so both answer
    alike; raises the same domain errors."""
    rows = [
        {
            "purpose": c.purpose,
            "status": c.status,
            "notice_version": c.notice_version,
            "since": iso(c.since),
            "expires_at": iso(c.expires_at),
            # No version published (yet): the one decided on.
            "current_notice_version": c.notice_version
            if c.current_notice is None
            else c.current_notice,
            "reconsent_required": c.status == "granted" and c.material_notice > c.notice_version,
        }
        for c in selectors.consent_states_of(identifier=subject_id)
    ]
    return {"subject_id": subject_id, "consents": rows}


class SubjectHistoryApi(APIView):
    required_scope = Scope.CONSENT_READ

    @extend_schema(
        operation_id="subject_history",
        parameters=[
            OpenApiParameter("cursor", str, required=False),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                required=False,
            ),
        ],
        responses={
            200: inline_serializer(
                "SubjectHistory",
                {
                    "subject_id": serializers.CharField(),
                    "events": HistoryEventSerializer(many=True),
                    "next_cursor": serializers.CharField(allow_null=True),
                },
            ),
            **error_responses(400),
        },
    )
    def get(self, request: Request, subject_id: str) -> Response:
        """A subject's consent events, oldest first, with their chain hashes, a page at a time."""
        raw_limit = request.query_params.get("limit", "50")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 500:
            raise InvalidRequest("limit must be an integer from 1 to 500.")
        subject = selectors.subject_find(identifier=subject_id)
        events, next_cursor = selectors.subject_history(
            subject=subject, cursor=request.query_params.get("cursor"), limit=int(raw_limit)
        )
        return Response(
            {
                "subject_id": subject_id,
                "events": HistoryEventSerializer(events, many=True).data,
                "next_cursor": next_cursor,
            }
        )


class SubjectWithdrawApi(APIView):
    required_scope = Scope.CONSENT_WRITE

    @extend_schema_serializer(component_name="WithdrawalInput")
    class InputSerializer(serializers.Serializer):
        purposes = DistinctList(
            child=Text(max_length=64),
            required=False,
            allow_empty=False,
            max_length=100,
        )
        context = ContextSerializer(required=False)  # type: ignore[assignment]

    @extend_schema(
        operation_id="subject_withdraw",
        request=InputSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            201: RecordOutputSerializer,
            200: RecordOutputSerializer,
            **error_responses(400, 409, 413, 415),
        },
    )
    def post(self, request: Request, subject_id: str) -> Response:
        """Withdraws a subject's consent to the purposes named (all of them when none is named)."""
        data = validated(self.InputSerializer, request.data)

        def produce() -> Answer:
            result = services.consent_withdraw(
                subject_id=subject_id,
                purposes=data.get("purposes"),
                actor=actor_of(request),
                context=client_context(request, data.get("context")),
            )
            code = status.HTTP_201_CREATED if result.events else status.HTTP_200_OK
            return record_answer(result, subject_id, code)

        answer = run_idempotent(
            client=api_client_of(request),
            key=request.headers.get("Idempotency-Key"),
            request_hash=fingerprint(request.path, request.data or {}),
            produce=produce,
            redact=_without_subject,
            restore=lambda body: {**body, "subject_id": subject_id},
            subject_key=subject_key(subject_id),
        )
        headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
        return Response(answer.body, status=answer.status, headers=headers)


NAMESPACE = OpenApiParameter(
    "namespace", str, required=False, enum=Subject.Namespace.values, description="default account"
)


def namespace_of(request: Request) -> str:
    """The subject's namespace from `?namespace=`: account (the default) or device."""
    namespace = request.query_params.get("namespace", Subject.Namespace.ACCOUNT)
    if namespace not in Subject.Namespace.values:
        raise InvalidRequest(
            "namespace must be one of: " + ", ".join(Subject.Namespace.values) + ".",
            detail={"field": "namespace"},
        )
    return namespace


class SubjectIdentifierApi(APIView):
    """Identifier rectification (GDPR Art. 16)."""

    required_scope = Scope.RIGHTS

    @extend_schema_serializer(component_name="RectificationInput")
    class InputSerializer(serializers.Serializer):
        new_subject_id = SubjectIdField()

    @extend_schema_serializer(component_name="Rectification")
    class OutputSerializer(serializers.Serializer):
        subject_id = serializers.CharField()
        event_id = serializers.UUIDField()

    @extend_schema(
        operation_id="subject_rectify",
        request=InputSerializer,
        parameters=[NAMESPACE],
        responses={200: OutputSerializer, **error_responses(400, 404, 409, 413, 415)},
        description="Replaces the subject's identifier; the old one then reads as never seen.",
    )
    def post(self, request: Request, subject_id: str) -> Response:
        data = validated(self.InputSerializer, request.data)
        result = rectification.subject_rectify(
            subject_id=subject_id,
            namespace=namespace_of(request),
            new_subject_id=data["new_subject_id"],
            actor=actor_of(request),
        )
        return Response(self.OutputSerializer(result).data)


class ReceiptDetailApi(APIView):
    required_scope = Scope.CONSENT_READ

    @extend_schema(
        operation_id="receipt_detail",
        responses={
            200: inline_serializer(
                "Receipt",
                {
                    "receipt_id": serializers.UUIDField(),
                    "subject_id": serializers.CharField(allow_null=True),
                    "recorded_at": Instant(),
                    "events": serializers.ListField(child=serializers.DictField()),
                    "kantara": serializers.DictField(),
                    "record": serializers.DictField(help_text="ISO/IEC TS 27560 record fields."),
                    "jws": serializers.CharField(
                        help_text="Compact JWS (ES256, kid, typ consent-receipt+jwt) over every "
                        "other field; keys at /.well-known/jwks.json."
                    ),
                },
            ),
            **error_responses(404),
        },
    )
    def get(self, request: Request, receipt_id: str) -> Response:
        """A consent receipt: its events, as Kantara v1.1 and ISO/IEC TS 27560, signed (JWS)."""
        try:
            parsed = uuid.UUID(receipt_id)
        except ValueError as exc:
            raise NotFound("No receipt with that id.") from exc
        events, context = selectors.receipt_get(receipt_id=parsed)
        if not events:
            raise NotFound("No receipt with that id.")
        subject_id = selectors.subject_identifier(events[0].subject)
        return Response(receipt_signed(events=events, context=context, subject_id=subject_id))
