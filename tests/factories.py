"""Factories for test data, written with the services so the data is what production makes."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from consent import services
from consent.models import LegalBasis, Purpose
from governance import services as governance_services
from governance.models import ApiClient

_names = itertools.count(1)


def api_client(*, scopes: list[str], kind: str = "secret") -> tuple[ApiClient, str]:
    return governance_services.api_client_create(
        name=f"client-{next(_names)}", scopes=scopes, kind=kind
    )


def purpose(
    key: str,
    *,
    legal_basis: str = LegalBasis.CONSENT,
    ttl_days: int | None = 365,
    gpc_opt_out: bool = False,
) -> Purpose:
    return services.purpose_create(
        key=key,
        name=key.replace("_", " ").title(),
        legal_basis=legal_basis,
        description=f"Processing for {key}.",
        consent_ttl=timedelta(days=ttl_days) if ttl_days else None,
        gpc_opt_out=gpc_opt_out,
        notice_texts={"en": (key, f"We use your data for {key}.")},
    )


def seed_purposes() -> dict[str, Purpose]:
    return {
        "analytics": purpose("analytics"),
        "ml_training": purpose("ml_training"),
        "direct_marketing": purpose("direct_marketing", ttl_days=30),
        "targeted_ads": purpose("targeted_ads", gpc_opt_out=True),
        "security": purpose("security", legal_basis=LegalBasis.LEGITIMATE_INTEREST, ttl_days=None),
        "service": purpose("service", legal_basis=LegalBasis.CONTRACT, ttl_days=None),
    }


def record(subject_id: str, **granted: bool) -> Any:
    return services.consent_record(
        subject_id=subject_id,
        decisions=[services.DecisionInput(purpose=k, granted=v) for k, v in granted.items()],
        actor=services.Actor.system("test"),
    )
