"""What the consent API's views share: the caller, its context, validated input and JSON
answers. Every view module (consents, banner, checks) takes these from here."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse
from rest_framework import serializers
from rest_framework.request import Request

from consent.ledger.write import ContextInput
from consent.services import DecisionInput
from governance.errors import InvalidRequest
from governance.models import ApiClient
from governance.net import client_ip


def client_context(request: Request, data: dict[str, Any] | None) -> ContextInput:
    """The proof context of a write: what the body says, and the client's address and agent."""
    ctx = data or {}
    return ContextInput(
        locale=ctx.get("locale", ""),
        jurisdiction=ctx.get("jurisdiction", ""),
        page=ctx.get("page", ""),
        ip=client_ip(request),
        user_agent=request.META.get("HTTP_USER_AGENT", "") or "",
    )


def api_client_of(request: Request) -> ApiClient:
    client = request.auth
    assert isinstance(client, ApiClient)  # guaranteed by HasScope
    return client


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def decision_inputs(decisions: list[dict[str, Any]]) -> list[DecisionInput]:
    return [
        DecisionInput(
            purpose=d["purpose"], granted=d["granted"], notice_version=d.get("notice_version")
        )
        for d in decisions
    ]


def iso(value: Any) -> str | None:
    """A timestamp as the API writes it (UTC as Z), None as None."""
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def json_response(body: Any, status_code: int = 200) -> HttpResponse:
    """A JSON answer without DRF's rendering (the hot paths and the streamed ones)."""
    return HttpResponse(
        json.dumps(body, ensure_ascii=False), status=status_code, content_type="application/json"
    )
