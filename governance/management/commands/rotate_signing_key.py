"""`python manage.py rotate_signing_key`: adds a new receipt-signing key (ES256)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from governance.signing import signing_key_rotate


class Command(BaseCommand):
    help = (
        "Add a new ES256 key that signs receipts from now on. Earlier keys stay in "
        "/.well-known/jwks.json for SIGNING_KEY_PUBLISH_DAYS after their last signature, "
        "so receipts they signed keep verifying."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        key = signing_key_rotate()
        self.stdout.write(f"new signing key {key.kid}")
