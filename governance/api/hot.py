"""A lean path in front of the DRF views of the hottest endpoints (the single check, the
consent write, a subject's consents and the banner's configuration).

DRF's dispatch (request wrapping, content negotiation, authentication, permission and
throttle classes, exception handling) costs about 1 ms of CPU a request, as much as the
check itself. `lean(View, fast)` serves the plain successful request without it: a bearer
key that is found and allowed, rate limits that let it through, JSON accepted, and a
`fast` handler that can answer. Everything else (every error, every unusual input) goes
to the DRF view untouched, so errors, their shape and the OpenAPI schema stay DRF's. The
same helpers do the work on both paths (key lookup, scope rule, rate limits, the answer
itself); tests/test_lean_paths.py holds the two paths' answers equal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from rest_framework.exceptions import APIException
from rest_framework.views import APIView

from governance.api.auth import bearer_key, client_for_key, scope_allows
from governance.api.throttling import COUNTED, rate_limit_wait
from governance.errors import DomainError
from governance.models import ApiClient

Fast = Callable[..., HttpResponse | None]

# Media ranges for which DRF's negotiation picks JSON, the only renderer (an Accept header
# with none of them, or a ?format= override, is left to DRF, which may answer 406).
_JSON_ACCEPTED = frozenset({"", "*/*", "application/*", "application/json"})


def _accepts_json(request: HttpRequest) -> bool:
    accept = request.META.get("HTTP_ACCEPT", "")
    return "format" not in request.GET and any(
        part.split(";")[0].strip().lower() in _JSON_ACCEPTED for part in accept.split(",")
    )


def _allowed_client(request: HttpRequest, view_class: type[APIView]) -> ApiClient | None:
    """The request's client when DRF would let it through to the handler, counted against
    its rate limits; None when DRF must decide (and answer 401, 403, 406 or 429)."""
    if not _accepts_json(request):
        return None
    key = bearer_key(request.META.get("HTTP_AUTHORIZATION", ""))
    client = client_for_key(key) if key is not None else None
    if client is None or not scope_allows(client, view_class):
        return None
    if rate_limit_wait(client, view_class, request) is not None:
        return None  # over a limit: DRF counts it again and answers 429
    setattr(request, COUNTED, True)
    return client


def lean(
    view_class: type[APIView],
    method: str,
    fast: Fast,
    *,
    first: Callable[[HttpRequest], bool] | None = None,
) -> Callable[..., HttpResponse]:
    """The URL callback: `fast(request, client, **kwargs)` for `method`, answering or
    returning None to hand the request to `view_class`. `first(request)`, when given, runs
    what the view runs before authentication (a limit per address, counted once per request
    whichever path answers); False hands the request to the view."""
    drf_view = view_class.as_view()
    probe = view_class()
    probe.setup(HttpRequest())  # as as_view() does: GET brings HEAD
    allow = ", ".join(probe.allowed_methods)

    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method == method and (first is None or first(request)):
            client = _allowed_client(request, view_class)
            if client is not None:
                try:
                    response = fast(request, client, *args, **kwargs)
                except (DomainError, APIException):
                    response = None  # the DRF view raises it again, in the error shape
                if response is not None:
                    response["Allow"] = allow  # as DRF adds to every answer
                    return response
        return drf_view(request, *args, **kwargs)

    # What Django, DRF's schema generator and drf-spectacular read off a DRF view callback.
    view.cls = view_class  # type: ignore[attr-defined]
    view.initkwargs = drf_view.initkwargs  # type: ignore[attr-defined]
    view.csrf_exempt = True  # type: ignore[attr-defined]
    view.__name__ = view_class.__name__
    view.__doc__ = view_class.__doc__
    return view
