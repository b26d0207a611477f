"""What every app's API views share: the calling client, validated input, query parameters
and JSON answers. Nothing here knows an app's models, so consent's and retention's views
(and governance's own) take these from one place."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request

from governance.actors import Actor
from governance.errors import InvalidRequest
from governance.models import ApiClient


def api_client_of(request: Request) -> ApiClient:
    client = request.auth
    assert isinstance(client, ApiClient)  # guaranteed by HasScope
    return client


def actor_of(request: Request) -> Actor:
    """The audit actor of an API request: its client."""
    return Actor.for_client(api_client_of(request))


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def bool_param(raw: Any, name: str) -> bool:
    """A boolean from JSON or a query string (true/1/false/0/empty); anything else is a 400."""
    if raw is None or isinstance(raw, bool):
        return bool(raw)
    if isinstance(raw, str) and raw.lower() in ("true", "1", "false", "0", ""):
        return raw.lower() in ("true", "1")
    raise InvalidRequest(f"{name} must be a boolean.", detail={"field": name})


def int_param(raw: str | None, *, name: str, default: int, low: int, high: int) -> int:
    """A query parameter's integer within [low, high]; absent or empty gives the default."""
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidRequest(
            f"{name} must be an integer from {low} to {high}.", detail={"field": name}
        )
    return int(raw)


def iso(value: Any) -> str | None:
    """A timestamp as the API writes it (UTC as Z), None as None."""
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def json_response(body: Any, status_code: int = 200) -> HttpResponse:
    """A JSON answer without DRF's rendering (the hot paths and the streamed ones)."""
    return HttpResponse(
        json.dumps(body, ensure_ascii=False), status=status_code, content_type="application/json"
    )


class JSONErrorsOnly:
    """For views that answer NDJSON or CSV themselves; DRF renders only their errors, as JSON.

    Skipping DRF's negotiation keeps `Accept: application/x-ndjson` and `?format=csv` from
    being refused (406/404) before the view runs.
    """

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        renderer = JSONRenderer()
        return renderer, renderer.media_type
