"""The lean twins of the hottest views (the consent write, the single check, a subject's
consents, the banner's configuration): each answers a plain successful request without
DRF's dispatch, for governance.api.hot.lean, and returns None (or raises) to hand anything
else to its DRF view. A twin and its view share the function that does the work, so both
write and answer alike (tests/test_lean_paths.py holds them equal).
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from rest_framework.renderers import JSONRenderer

from consent.api.serializers import record_input_fast
from consent.api.views import consent_record_answer, subject_consents_body
from consent.banner import selectors as banner_selectors
from consent.banner.api import banner_config_body
from consent.checks.api import subject_check_response
from governance.api.common import json_response
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


# --- GET /api/v1/subjects/{id}/consents: the twin of views.SubjectConsentsApi ---------------


def subject_consents_lean(request: HttpRequest, client: ApiClient, subject_id: str) -> HttpResponse:
    """SubjectConsentsApi's answer: the view's own `subject_consents_body`."""
    return json_response(subject_consents_body(subject_id))


# --- GET /api/v1/banner/config: the twin of banner.api.BannerConfigApi ----------------------
# Its address's rate limit is counted first (consent.banner.limits, the dispatcher's `first`);
# CORS is the middleware's on both paths.


def banner_config_lean(request: HttpRequest, client: ApiClient) -> HttpResponse:
    """BannerConfigApi's answer: the key's property and origin checked as BannerApi.initial
    checks them, then the view's own `banner_config_body`, not kept by shared caches."""
    prop = banner_selectors.property_for_client(client)
    banner_selectors.origin_check(prop=prop, origin=request.headers.get("Origin"))
    response = json_response(banner_config_body(request, prop))
    response["Cache-Control"] = "private, no-store"  # as BannerApi.finalize_response
    return response
