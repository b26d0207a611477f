"""The lean twins of the hottest views: each answers a plain successful request without
DRF's dispatch, for governance.api.hot.lean, and returns None (or raises) to hand anything
else to its DRF view. A twin and its view share the function that does the work, so both
write and answer alike (tests/test_lean_paths.py holds them equal).
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from rest_framework.renderers import JSONRenderer

from consent.api.serializers import record_input_fast
from consent.api.views import consent_record_answer
from consent.checks.api import subject_check_response
from governance.api.parsers import json_parse
from governance.models import ApiClient

# --- POST /api/v1/consents: the twin of views.ConsentRecordApi -----------------------------


def consent_record_lean(request: HttpRequest, client: ApiClient) -> HttpResponse | None:
    """ConsentRecordApi's answer to a plainly valid JSON body without an Idempotency-Key;
    None leaves the request to the view."""
    length = request.META.get("CONTENT_LENGTH") or ""
    if (
        "HTTP_IDEMPOTENCY_KEY" in request.META
        or request.content_type != "application/json"
        or not length.isdigit()
        or not 0 < int(length) <= settings.CONSENT_MAX_BODY_BYTES
    ):
        return None
    # The same parser as the view's (its errors send the request to the view, which
    # raises them again in the error shape).
    data = record_input_fast(json_parse(request.body))
    if data is None:
        return None
    answer = consent_record_answer(request, client, data)
    return HttpResponse(
        JSONRenderer().render(answer.body), status=answer.status, content_type="application/json"
    )


# --- GET /api/v1/subjects/{id}/checks/{purpose}: the twin of checks.api.SubjectCheckApi -----


def subject_check_lean(
    request: HttpRequest, client: ApiClient, subject_id: str, purpose: str
) -> HttpResponse:
    """SubjectCheckApi's answer for the lean path: the view's own `subject_check_response`."""
    return subject_check_response(subject_id, purpose, request.GET.get("as_of"))
