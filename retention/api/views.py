"""Retention and rights API views: thin, each parses, calls one service or selector."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consent.api.serializers import SubjectIdField
from governance.api.common import Duration, Flag, Instant, Text, actor_of, validated
from governance.api.schema import error_responses
from governance.errors import NotFound
from governance.models import Scope
from retention import selectors
from retention.models import RequestStatus
from retention.services import enforcement, policies, rights


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise NotFound() from exc


class PolicySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    target = serializers.CharField()
    keep_for = Duration()
    keep_for_days = serializers.SerializerMethodField()
    action = serializers.CharField()
    condition = serializers.JSONField()
    batch_size = serializers.IntegerField()
    enabled = serializers.BooleanField()
    purpose = serializers.SerializerMethodField()
    held = serializers.SerializerMethodField()

    def get_keep_for_days(self, obj: Any) -> float:
        return float(obj.keep_for.total_seconds() / 86400)

    def get_purpose(self, obj: Any) -> str | None:
        return selectors.policy_purpose_key(obj)

    def get_held(self, obj: Any) -> bool:
        return selectors.policy_is_held(obj)


class PolicyListApi(APIView):
    required_scope = Scope.ADMIN

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "RetentionPolicyCreate"

        name = Text(max_length=120)
        target = Text(max_length=200)
        keep_for = Text(max_length=64, help_text="ISO 8601, e.g. P30D")
        action = Text(max_length=16, required=False, default="delete")
        condition = serializers.DictField(required=False, default=dict)
        batch_size = serializers.IntegerField(required=False, default=10_000)
        enabled = serializers.BooleanField(required=False, default=True)
        purpose = Text(max_length=64, required=False, allow_null=True)

    @extend_schema(
        operation_id="retention_policies_list",
        responses={
            200: inline_serializer("PolicyList", {"policies": PolicySerializer(many=True)}),
            **error_responses(),
        },
    )
    def get(self, request: Request) -> Response:
        """Lists the retention policies, with each one's period, action and whether a hold stops
        it."""
        return Response({"policies": PolicySerializer(selectors.policy_list(), many=True).data})

    @extend_schema(
        operation_id="retention_policies_create",
        request=InputSerializer,
        responses={201: PolicySerializer, **error_responses(400, 409)},
    )
    def post(self, request: Request) -> Response:
        """Creates a retention policy for a registered target, its period an ISO 8601 duration."""
        data = validated(self.InputSerializer, request.data)
        policy = policies.policy_create(data=policies.PolicyInput(**data), actor=actor_of(request))
        return Response(PolicySerializer(policy).data, status=status.HTTP_201_CREATED)


class PolicyDetailApi(APIView):
    required_scope = Scope.ADMIN

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "RetentionPolicyUpdate"

        name = Text(max_length=120, required=False)
        target = Text(max_length=200, required=False)
        keep_for = Text(max_length=64, required=False, help_text="ISO 8601, e.g. P30D")
        action = Text(max_length=16, required=False)
        condition = serializers.DictField(required=False)
        batch_size = serializers.IntegerField(required=False)
        enabled = serializers.BooleanField(required=False)
        purpose = Text(max_length=64, required=False, allow_null=True)

    @extend_schema(
        operation_id="retention_policies_update",
        request=InputSerializer,
        responses={200: PolicySerializer, **error_responses(400, 404, 409)},
        description="Changes the fields given; validated like a new policy.",
    )
    def patch(self, request: Request, policy_id: int) -> Response:
        policy = selectors.policy_get(policy_id=policy_id)
        if policy is None:
            raise NotFound()
        data = validated(self.InputSerializer, request.data)
        changed = dataclasses.replace(policies.policy_input(policy), **data)
        policy = policies.policy_update(policy=policy, data=changed, actor=actor_of(request))
        return Response(PolicySerializer(policy).data)


class RunItemSerializer(serializers.Serializer):
    policy = serializers.CharField(source="policy_name")
    target = serializers.CharField()
    action = serializers.CharField()
    cutoff = Instant()
    status = serializers.CharField()
    examined = serializers.IntegerField()
    removed = serializers.IntegerField()
    held = serializers.IntegerField()
    files_removed = serializers.IntegerField(help_text="Files deleted from storage (lake tables).")
    chunks = serializers.IntegerField()
    duration_ms = serializers.IntegerField()
    error = serializers.CharField()


class RunSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    dry_run = serializers.BooleanField()
    trigger = serializers.CharField()
    status = serializers.CharField()
    started_at = Instant()
    finished_at = Instant(allow_null=True)
    examined = serializers.IntegerField()
    removed = serializers.IntegerField(help_text="For a dry run: the rows that would go.")
    held = serializers.IntegerField()
    files_removed = serializers.IntegerField(help_text="Files deleted from storage (lake tables).")
    error = serializers.CharField()
    policies = RunItemSerializer(many=True, source="items.all")


class RunCreateApi(APIView):
    required_scope = Scope.ADMIN

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "RetentionRunCreate"

        dry_run = Flag(required=False, default=False)

    @extend_schema(
        operation_id="retention_runs_create",
        request=InputSerializer,
        responses={
            201: RunSerializer,
            202: RunSerializer,
            **error_responses(400),
        },
        description="A dry run is carried out at once and answered 201 with what would go; "
        "a real run is queued for the worker (202) and read back with GET.",
    )
    def post(self, request: Request) -> Response:
        data = validated(self.InputSerializer, request.data)
        if data["dry_run"]:
            run = enforcement.retention_enforce(dry_run=True, trigger="api").run
            return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED)
        run = enforcement.run_queue(dry_run=False, trigger="api", actor=actor_of(request))
        return Response(RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class RunDetailApi(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="retention_runs_get",
        responses={200: RunSerializer, **error_responses(404)},
    )
    def get(self, request: Request, run_id: str) -> Response:
        """A retention run: its status and, per policy, rows examined, removed and held back."""
        run = selectors.run_get(run_id=_uuid(run_id))
        if run is None:
            raise NotFound()
        return Response(RunSerializer(run).data)


class SubjectInputSerializer(serializers.Serializer):
    subject_id = SubjectIdField()
    namespace = serializers.ChoiceField(
        choices=["account", "device"], required=False, default="account"
    )


class RequestAcceptedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    created_at = Instant()
    due_at = Instant()


class ErasureRequestApi(APIView):
    required_scope = Scope.RIGHTS

    @extend_schema(
        operation_id="erasure_requests_create",
        request=SubjectInputSerializer,
        responses={202: RequestAcceptedSerializer, **error_responses(400)},
    )
    def post(self, request: Request) -> Response:
        """Starts erasure of a subject everywhere the service reaches. The same answer whether or
        not the subject is known."""
        data = validated(SubjectInputSerializer, request.data)
        created = rights.erasure_request_create(
            subject_id=data["subject_id"], namespace=data["namespace"], actor=actor_of(request)
        )
        return Response(RequestAcceptedSerializer(created).data, status=status.HTTP_202_ACCEPTED)


class ErasureTargetSerializer(serializers.Serializer):
    done = serializers.BooleanField()


class ErasureDetailSerializer(RequestAcceptedSerializer):
    """Where an erasure stands, and nothing that tells a known person from an unknown one:
    no removed counts, holds or decision ids (those are for staff, in the admin)."""

    completed_at = Instant(allow_null=True)
    overdue = serializers.SerializerMethodField()
    targets = serializers.SerializerMethodField()

    def get_overdue(self, obj: Any) -> bool:
        from django.utils import timezone

        return bool(obj.status != RequestStatus.COMPLETE and obj.due_at < timezone.now())

    @extend_schema_field(serializers.DictField(child=ErasureTargetSerializer()))
    def get_targets(self, obj: Any) -> dict[str, dict[str, bool]]:
        return selectors.erasure_targets_done(obj)


class ErasureDetailApi(APIView):
    required_scope = Scope.RIGHTS

    @extend_schema(
        operation_id="erasure_requests_get",
        responses={200: ErasureDetailSerializer, **error_responses(404)},
        description="The request's status and, per target, whether it is done: the same "
        "answer for a person the service knew and one it never saw. Removed counts and "
        "holds are shown to staff in the admin.",
    )
    def get(self, request: Request, request_id: str) -> Response:
        found = selectors.erasure_request_get(request_id=_uuid(request_id))
        if found is None:
            raise NotFound()
        return Response(ErasureDetailSerializer(found).data)


class AccessRequestApi(APIView):
    required_scope = Scope.RIGHTS

    @extend_schema(
        operation_id="access_requests_create",
        request=SubjectInputSerializer,
        responses={202: RequestAcceptedSerializer, **error_responses(400)},
    )
    def post(self, request: Request) -> Response:
        """Starts an access request (GDPR Art. 15): everything held about the subject, exportable
        once ready."""
        data = validated(SubjectInputSerializer, request.data)
        created = rights.access_request_create(
            subject_id=data["subject_id"], namespace=data["namespace"], actor=actor_of(request)
        )
        return Response(RequestAcceptedSerializer(created).data, status=status.HTTP_202_ACCEPTED)


class AccessDetailApi(APIView):
    required_scope = Scope.RIGHTS

    @extend_schema(
        operation_id="access_requests_get",
        responses={
            200: inline_serializer(
                "AccessRequestDetail",
                {
                    "id": serializers.UUIDField(),
                    "status": serializers.CharField(),
                    "created_at": Instant(),
                    "due_at": Instant(),
                    "completed_at": Instant(allow_null=True),
                    "export": serializers.JSONField(allow_null=True),
                },
            ),
            **error_responses(404),
        },
    )
    def get(self, request: Request, request_id: str) -> Response:
        """An access request's status and, once it is complete, its export."""
        found = selectors.access_request_get(request_id=_uuid(request_id))
        if found is None:
            raise NotFound()
        export = selectors.access_export(found)
        return Response(
            {
                "id": str(found.pk),
                "status": found.status,
                "created_at": found.created_at,
                "due_at": found.due_at,
                "completed_at": found.completed_at,
                "export": export,
            }
        )
