"""Import and export API views: upload an import (checked whole, then applied by a worker),
follow its progress, and read a subject's records as ISO/IEC TS 27560 JSON-LD."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from consent import selectors as consent_selectors
from consent.api.views import NAMESPACE, namespace_of
from consent.checks.api import body_blocks
from consent.imports import check, selectors, services
from consent.imports.formats import FORMATS, mapping_load
from consent.snapshots.uploads import spool
from governance.api.common import JSONErrorsOnly, actor_of, json_response
from governance.api.schema import error_responses
from governance.errors import InvalidRequest
from governance.models import Scope

# An import is read whole into memory to be checked: a file up to this size.
MAX_IMPORT_BYTES = 256 * 1024 * 1024
_FORMAT_OF_MEDIA_TYPE = {
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "text/csv": "csv",
    "application/json": "json",
    selectors.JSONLD_MEDIA_TYPE: "jsonld",
}

ImportSerializer = inline_serializer(
    "ConsentImport",
    {
        "id": serializers.UUIDField(),
        "status": serializers.ChoiceField(["pending", "running", "completed", "failed"]),
        "format": serializers.CharField(),
        "mapping": serializers.CharField(allow_null=True),
        "file_sha256": serializers.CharField(),
        "records": serializers.IntegerField(),
        "ignored": serializers.IntegerField(),
        "applied": serializers.IntegerField(),
        "skipped": serializers.IntegerField(),
        "batches": inline_serializer(
            "ConsentImportBatches",
            {"done": serializers.IntegerField(), "total": serializers.IntegerField()},
        ),
        "created_at": serializers.DateTimeField(),
        "completed_at": serializers.DateTimeField(allow_null=True),
        "error": serializers.CharField(allow_null=True),
    },
)


def _format_of(request: Request) -> str:
    named = request.query_params.get("format")
    if named:
        if named not in FORMATS:
            raise InvalidRequest(
                f"format must be one of {', '.join(FORMATS)}.", detail={"field": "format"}
            )
        return named
    media_type = (request.content_type or "").split(";")[0].strip().lower()
    if media_type not in _FORMAT_OF_MEDIA_TYPE:
        raise InvalidRequest(
            "Name the format (?format=jsonl|csv|json|jsonld) or send a Content-Type of "
            + ", ".join(_FORMAT_OF_MEDIA_TYPE)
            + ".",
            detail={"field": "format"},
        )
    return _FORMAT_OF_MEDIA_TYPE[media_type]


class ImportCreateApi(JSONErrorsOnly, APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="imports_create",
        parameters=[
            OpenApiParameter("format", str, enum=list(FORMATS), required=False),
            OpenApiParameter("mapping", str, required=False, description="a shipped mapping"),
            OpenApiParameter("dry_run", bool, required=False),
        ],
        request={
            "application/x-ndjson": OpenApiTypes.STR,
            "text/csv": OpenApiTypes.STR,
            "application/json": OpenApiTypes.OBJECT,
            selectors.JSONLD_MEDIA_TYPE: OpenApiTypes.OBJECT,
        },
        responses={
            202: inline_serializer(
                "ConsentImportCreated",
                {"id": serializers.UUIDField(), "status": serializers.CharField()},
            ),
            200: inline_serializer(
                "ConsentImportDryRun",
                {
                    "dry_run": serializers.BooleanField(),
                    "records": serializers.IntegerField(),
                    "ignored": serializers.IntegerField(),
                    "new": serializers.IntegerField(),
                    "already_imported": serializers.IntegerField(),
                },
            ),
            **error_responses(400, 413, 415),
        },
        description="Checks the whole file (400 `import_invalid` naming every bad row, and "
        "nothing written), then stores it encrypted and applies it in a worker: 202 with "
        "the import's id; follow it at GET /api/v1/imports/{id}. `dry_run=true` checks "
        "and counts without writing (200). See docs/imports.md.",
    )
    def post(self, request: Request) -> HttpResponse:
        fmt = _format_of(request)
        name = request.query_params.get("mapping") or None
        mapping = mapping_load(name, paths=False) if name else None
        dry_run = request.query_params.get("dry_run", "").lower() in ("1", "true", "yes")
        with spool(body_blocks(request), limit=MAX_IMPORT_BYTES) as body:
            checked = check.import_check(body=body, fmt=fmt, mapping=mapping)
        if dry_run:
            result = check.import_dry_run(checked)
            return json_response(
                {
                    "dry_run": True,
                    "records": result.records,
                    "ignored": result.ignored,
                    "new": result.new,
                    "already_imported": result.already_imported,
                }
            )
        consent_import = services.import_create(actor=actor_of(request), checked=checked)
        return json_response({"id": str(consent_import.id), "status": consent_import.status}, 202)


class ImportDetailApi(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="import_detail",
        responses={200: ImportSerializer, **error_responses(404)},
        description="An import and its progress: records applied and skipped (imported "
        "before), batches done.",
    )
    def get(self, request: Request, import_id: str) -> HttpResponse:
        return json_response(selectors.import_body(selectors.import_get(import_id=import_id)))


class SubjectRecordsApi(JSONErrorsOnly, APIView):
    required_scope = Scope.CONSENT_READ

    @extend_schema(
        operation_id="subject_records",
        parameters=[
            OpenApiParameter("format", str, enum=["jsonld"], required=False),
            NAMESPACE,
        ],
        responses={(200, selectors.JSONLD_MEDIA_TYPE): OpenApiTypes.OBJECT, **error_responses(400)},
        description="The subject's consent events as ISO/IEC TS 27560 records in W3C DPV "
        "JSON-LD (one `dpv:ConsentRecord` per event, in chain order); POST /api/v1/imports "
        "with `format=jsonld` reads the document back.",
    )
    def get(self, request: Request, subject_id: str) -> HttpResponse:
        if request.query_params.get("format", "jsonld") != "jsonld":
            raise InvalidRequest("format must be jsonld.", detail={"field": "format"})
        subject = consent_selectors.subject_find(
            identifier=subject_id, namespace=namespace_of(request)
        )
        response = json_response(selectors.subject_records(subject=subject))
        response["Content-Type"] = selectors.JSONLD_MEDIA_TYPE
        return response
