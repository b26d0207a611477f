"""What the consent API's views share beyond governance.api.common: a write's proof context
and its decisions as the services take them."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request

from consent.ledger.write import ContextInput
from consent.services import DecisionInput
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


def decision_inputs(decisions: list[dict[str, Any]]) -> list[DecisionInput]:
    return [
        DecisionInput(
            purpose=d["purpose"], granted=d["granted"], notice_version=d.get("notice_version")
        )
        for d in decisions
    ]
