"""Seeds demo purposes and notices, a demo API key and a demo admin; prints credentials once."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from consent import services
from consent.models import LegalBasis, Purpose
from governance import services as governance_services
from governance.models import ApiClient, Scope, StaffTotpDevice

# (key, name, DPV concept, TCF ids, legal basis, consent ttl days, gpc_opt_out, categories)
DEMO_PURPOSES: list[tuple[str, str, str, list[int], str, int | None, bool, list[str]]] = [
    (
        "service",
        "Providing the service",
        "ServiceProvision",
        [],
        LegalBasis.CONTRACT,
        None,
        False,
        ["account", "usage"],
    ),
    (
        "security",
        "Fraud prevention and security",
        "FraudPreventionAndDetection",
        [],
        LegalBasis.LEGITIMATE_INTEREST,
        None,
        False,
        ["usage", "device"],
    ),
    (
        "analytics",
        "Usage analytics",
        "ServiceUsageAnalytics",
        [8, 9],
        LegalBasis.CONSENT,
        395,
        False,
        ["usage", "device"],
    ),
    (
        "personalisation",
        "Personalised content",
        "ServicePersonalisation",
        [5, 6],
        LegalBasis.CONSENT,
        395,
        False,
        ["usage", "preferences"],
    ),
    (
        "ml_training",
        "Training machine-learning models",
        "ResearchAndDevelopment",
        [10],
        LegalBasis.CONSENT,
        395,
        False,
        ["usage", "content"],
    ),
    (
        "direct_marketing",
        "Marketing e-mail",
        "DirectMarketing",
        [],
        LegalBasis.CONSENT,
        730,
        False,
        ["contact"],
    ),
    (
        "targeted_ads",
        "Personalised advertising",
        "PersonalisedAdvertising",
        [2, 3, 4, 7],
        LegalBasis.CONSENT,
        395,
        True,
        ["usage", "device"],
    ),
    (
        "sale_sharing",
        "Selling or sharing data with third parties",
        "SellDataToThirdParties",
        [],
        LegalBasis.CONSENT,
        395,
        True,
        ["usage", "contact"],
    ),
]

DEMO_CLIENT = "demo"


class Command(BaseCommand):
    help = "Seed demo purposes, a demo API key and a demo admin (credentials printed once)."

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            created = self._purposes()
            key = self._api_client()
            password = self._admin()
        self.stdout.write(f"Purposes: {created} created, {len(DEMO_PURPOSES) - created} present.")
        if key:
            self.stdout.write(self.style.WARNING(f"Demo API key (shown once): {key}"))
        if password:
            self.stdout.write(
                self.style.WARNING(f"Demo admin (shown once): user 'admin', password '{password}'")
            )
        if not StaffTotpDevice.objects.filter(user__username="admin").exists():
            self.stdout.write(
                "Two-factor sign-in: with DEBUG off (or STAFF_OTP_REQUIRED=1) the admin also "
                "asks for a code from an authenticator app. Enrol the demo admin with "
                "`make enrol-totp STAFF=admin`; see docs/staff-accounts.md."
            )
        if not key and not password:
            self.stdout.write(
                "Demo credentials were printed on the first run. Another key: "
                "`make -s key NAME=me SCOPES=consent:write,consent:read,checks,rights,admin`; "
                "a new admin password: `make admin-password STAFF=admin`."
            )

    def _purposes(self) -> int:
        created = 0
        for key, name, dpv, tcf, basis, ttl, gpc, categories in DEMO_PURPOSES:
            if Purpose.objects.filter(key=key).exists():
                continue
            services.purpose_create(
                key=key,
                name=name,
                legal_basis=basis,
                description=f"We use your data for: {name.lower()}.",
                dpv_concept=dpv,
                tcf_purpose_ids=tcf,
                data_categories=categories,
                consent_ttl=timedelta(days=ttl) if ttl else None,
                gpc_opt_out=gpc,
                notice_texts={
                    "en": (name, f"We use your data for: {name.lower()}."),
                    "de": (name, f"Wir verwenden Ihre Daten für: {name}."),
                },
            )
            created += 1
        return created

    def _api_client(self) -> str | None:
        if ApiClient.objects.filter(name=DEMO_CLIENT).exists():
            return None
        _, key = governance_services.api_client_create(name=DEMO_CLIENT, scopes=Scope.values)
        return key

    def _admin(self) -> str | None:
        user_model = get_user_model()
        if user_model.objects.filter(username="admin").exists():
            return None
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser("admin", "admin@example.com", password)
        return password
