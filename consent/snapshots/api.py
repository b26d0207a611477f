"""Snapshot API views: create, read (signed), download, delete, and record usage.

Every endpoint answers 404 to clients other than the creator (any of its keys); a key with
`admin` reads the metadata, never the key or the file.
"""

from __future__ import annotations

from django.http import FileResponse, HttpResponse
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

from consent.checks.api import body_blocks
from consent.checks.inputs import as_of_parse
from consent.identity import identifier_ok
from consent.snapshots import files, selectors, services, uploads
from consent.snapshots.usage import snapshot_usage_record
from governance.api.common import (
    Instant,
    InstantText,
    JSONErrorsOnly,
    Text,
    actor_of,
    api_client_of,
    json_response,
    validated,
)
from governance.api.schema import error_responses
from governance.errors import InvalidRequest
from governance.models import Scope

SnapshotSerializer = inline_serializer(
    "Snapshot",
    {
        "id": serializers.UUIDField(),
        "status": serializers.ChoiceField(["pending", "ready", "failed", "expired"]),
        "purpose": serializers.CharField(),
        "data_use": serializers.CharField(allow_null=True),
        "as_of": Instant(),
        "namespace": serializers.CharField(),
        "key": serializers.ChoiceField(["identifier", "subject_key"]),
        "counts": inline_serializer(
            "SnapshotCounts",
            {"allowed": serializers.IntegerField(), "denied": serializers.IntegerField()},
        ),
        "default_allowed": serializers.BooleanField(),
        "file_sha256": serializers.CharField(allow_null=True),
        "expires_at": Instant(),
        "manifest": serializers.CharField(),
        "pseudonym_key": serializers.CharField(allow_null=True),
    },
)


class SnapshotCreateApi(APIView):
    required_scope = Scope.CHECKS

    @extend_schema_serializer(component_name="SnapshotCreate")
    class InputSerializer(serializers.Serializer):
        purpose = Text(required=False, allow_blank=True, allow_null=True)
        data_use = Text(required=False, allow_blank=True, allow_null=True)
        as_of = InstantText(required=False, allow_blank=True, allow_null=True)
        namespace = serializers.ChoiceField(["account"], required=False, default="account")
        key = serializers.ChoiceField(
            ["identifier", "subject_key"], required=False, default="identifier"
        )

    @extend_schema(
        operation_id="snapshots_create",
        request=InputSerializer,
        responses={
            202: inline_serializer(
                "SnapshotCreated",
                {"id": serializers.UUIDField(), "status": serializers.CharField()},
            ),
            **error_responses(400, 413, 415),
        },
        description="Queues a snapshot of one purpose's decisions (name a purpose or a data "
        "use; a data use implies its purpose) for every subject of the namespace, as of "
        "`as_of` (default: now), keyed by pseudonyms under a fresh random key.",
    )
    def post(self, request: Request) -> HttpResponse:
        data = validated(self.InputSerializer, request.data)
        snapshot = services.snapshot_create(
            actor=actor_of(request),
            purpose_key=data.get("purpose"),
            data_use_key=data.get("data_use"),
            as_of=as_of_parse(data.get("as_of")),
            namespace=data["namespace"],
            key_kind=data["key"],
        )
        return json_response({"id": str(snapshot.id), "status": snapshot.status}, 202)


class SnapshotDetailApi(APIView):
    # The creator reads and deletes; an `admin` key reads the metadata only.
    required_scope = (Scope.CHECKS, Scope.ADMIN)

    @extend_schema(
        operation_id="snapshot_detail",
        responses={200: SnapshotSerializer, **error_responses(404)},
        description="The snapshot, with `manifest` (a compact JWS, typ "
        "`snapshot-manifest+jws`, over every other field but `pseudonym_key`) and, for its "
        "creator while it lives, `pseudonym_key` (padded standard base64). A key with "
        "`admin` sees the metadata of any snapshot, its key never.",
    )
    def get(self, request: Request, snapshot_id: str) -> HttpResponse:
        client = api_client_of(request)
        snapshot = selectors.snapshot_get(snapshot_id=snapshot_id, client=client, metadata=True)
        owner = selectors.snapshot_owned_by(snapshot, client)
        return json_response(selectors.snapshot_body(snapshot, with_key=owner))

    @extend_schema(
        operation_id="snapshot_delete",
        responses={204: None, **error_responses(404)},
        description="Deletes the file and destroys the key; the snapshot reads as expired.",
    )
    def delete(self, request: Request, snapshot_id: str) -> HttpResponse:
        client = api_client_of(request)
        snapshot = selectors.snapshot_get(snapshot_id=snapshot_id, client=client)
        services.snapshot_delete(snapshot=snapshot, actor=actor_of(request))
        return HttpResponse(status=204)


class SnapshotFileApi(JSONErrorsOnly, APIView):
    required_scope = Scope.CHECKS

    @extend_schema(
        operation_id="snapshot_file",
        responses={
            (200, files.MEDIA_TYPE): OpenApiResponse(
                OpenApiTypes.BINARY,
                description="Parquet: pseudonym (binary(32)), allowed (bool), reason.",
            ),
            **error_responses(404, 409),
        },
    )
    def get(self, request: Request, snapshot_id: str) -> FileResponse:
        """Downloads the snapshot's Parquet file (its creator only, while it lives)."""
        snapshot = selectors.snapshot_get(snapshot_id=snapshot_id, client=api_client_of(request))
        path = selectors.snapshot_file(snapshot)
        response = FileResponse(path.open("rb"), content_type=files.MEDIA_TYPE)
        response["Content-Disposition"] = f'attachment; filename="snapshot-{snapshot.id}.parquet"'
        return response


class SnapshotUsageApi(JSONErrorsOnly, APIView):
    required_scope = Scope.CHECKS

    @extend_schema(
        operation_id="snapshot_usage",
        parameters=[OpenApiParameter("model", str, required=True)],
        request={
            uploads.NDJSON: OpenApiTypes.STR,
            files.MEDIA_TYPE: OpenApiTypes.BINARY,
        },
        responses={
            201: inline_serializer(
                "SnapshotUsage",
                {
                    "decision_id": serializers.UUIDField(),
                    "used": serializers.IntegerField(),
                    "unknown": serializers.IntegerField(),
                    "withdrawn_since": serializers.IntegerField(),
                },
            ),
            **error_responses(400, 404, 409, 413, 415),
        },
        description="Records the people a model was trained on (pseudonyms of this "
        "snapshot) as a decision with lineage, so drift and a subject's decisions name it. "
        "An upload holding anyone the snapshot denies (or does not list, while "
        "`default_allowed` is false) is a 400 `denied_in_snapshot` and records nothing. "
        'A consent skew report computed locally may come along (an NDJSON line {"skew": '
        "{...}}, or the Parquet schema metadata `consent.skew`); it is stored with the "
        "decision if it has the published, suppressed shape (400 `invalid_skew` if not).",
    )
    def post(self, request: Request, snapshot_id: str) -> HttpResponse:
        snapshot = selectors.snapshot_get(snapshot_id=snapshot_id, client=api_client_of(request))
        model = request.query_params.get("model", "")
        if not identifier_ok(model) or len(model) > 200:
            raise InvalidRequest(
                "model must name the model: 1 to 200 characters, no control characters.",
                detail={"field": "model"},
            )
        media_type = (request.content_type or "").split(";")[0].strip().lower()
        if media_type not in uploads.MEDIA_TYPES:
            raise drf_exceptions.UnsupportedMediaType(media_type or "none")
        with uploads.spool(body_blocks(request)) as body:
            if media_type == uploads.NDJSON:
                usage = uploads.pseudonyms_ndjson(body)
            else:
                usage = uploads.pseudonyms_parquet(body)
        result = snapshot_usage_record(
            snapshot=snapshot,
            actor=actor_of(request),
            model=model,
            pseudonyms=usage.pseudonyms,
            skew=usage.skew,
        )
        return json_response(
            {
                "decision_id": str(result.decision.id),
                "used": result.used,
                "unknown": result.unknown,
                "withdrawn_since": result.withdrawn_since,
            },
            201,
        )


__all__ = ["SnapshotCreateApi", "SnapshotDetailApi", "SnapshotFileApi", "SnapshotUsageApi"]
