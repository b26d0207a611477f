"""Restriction API (scope `rights`): GET, POST (place) and DELETE (lift) on
/api/v1/subjects/{subject_id}/restriction, each answering the subject's periods."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consent import identity
from consent.models import Subject
from consent.restriction import selectors, services
from governance.api.common import Prose, actor_of, validated
from governance.api.schema import error_responses
from governance.models import Scope


class PeriodSerializer(serializers.Serializer):
    started_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)
    reason = serializers.CharField()


RestrictionOutput = inline_serializer(
    "SubjectRestriction",
    {"subject_id": serializers.CharField(), "periods": PeriodSerializer(many=True)},
)

NAMESPACE = OpenApiParameter(
    "namespace",
    str,
    required=False,
    enum=Subject.Namespace.values,
    description="The identifier's namespace, `account` by default.",
)


class NamespaceSerializer(serializers.Serializer):
    namespace = serializers.ChoiceField(
        choices=Subject.Namespace.values, required=False, default=Subject.Namespace.ACCOUNT
    )


def _namespace(request: Request, subject_id: str) -> str:
    """The path's identifier checked first (its 400 wins), then `?namespace=`."""
    identity.validate_identifier(subject_id)
    return str(validated(NamespaceSerializer, request.query_params.dict())["namespace"])


def _answer(subject_id: str, periods: list[dict[str, Any]], code: int) -> Response:
    return Response({"subject_id": subject_id, "periods": periods}, status=code)


class SubjectRestrictionApi(APIView):
    required_scope = Scope.RIGHTS

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "RestrictionInput"

        reason = Prose(max_length=services.MAX_REASON_LENGTH, non_blank=True)

    @extend_schema(
        operation_id="subject_restriction_get",
        parameters=[NAMESPACE],
        responses={200: RestrictionOutput, **error_responses(400)},
        description="The subject's restriction periods (Art. 18), oldest first; none for an "
        "identifier the service never saw.",
    )
    def get(self, request: Request, subject_id: str) -> Response:
        namespace = _namespace(request, subject_id)
        periods = selectors.restriction_periods_for(identifier=subject_id, namespace=namespace)
        return _answer(subject_id, periods, status.HTTP_200_OK)

    @extend_schema(
        operation_id="subject_restriction_place",
        parameters=[NAMESPACE],
        request=InputSerializer,
        responses={201: RestrictionOutput, **error_responses(400, 409, 413, 415)},
        description="Restricts processing from now on: every check inside the period denies "
        "every purpose with reason `restricted`. An unknown identifier becomes a subject. "
        "409 `already_restricted` while a period is open.",
    )
    def post(self, request: Request, subject_id: str) -> Response:
        namespace = _namespace(request, subject_id)
        data = validated(self.InputSerializer, request.data)
        periods = services.restriction_place(
            subject_id=subject_id,
            namespace=namespace,
            reason=data["reason"],
            actor=actor_of(request),
        )
        return _answer(subject_id, periods, status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="subject_restriction_lift",
        parameters=[NAMESPACE],
        responses={200: RestrictionOutput, **error_responses(400, 409)},
        description="Ends the open period now. 409 `not_restricted` when none is open.",
    )
    def delete(self, request: Request, subject_id: str) -> Response:
        namespace = _namespace(request, subject_id)
        periods = services.restriction_lift(
            subject_id=subject_id, namespace=namespace, actor=actor_of(request)
        )
        return _answer(subject_id, periods, status.HTTP_200_OK)
