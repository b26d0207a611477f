"""`python manage.py rotate_encryption_key`: re-encrypts every stored secret under the current
SUBJECT_ENCRYPTION_KEY, in batches, while the service keeps reading (see README)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance import crypto
from governance.actors import Actor
from governance.audit import audit_record
from governance.reencrypt import encrypted_fields, reencrypt_field, remaining_under_old_keys


class Command(BaseCommand):
    help = (
        "Re-encrypt every registered encrypted column (identifiers, rights requests and their "
        "exports, webhook secrets, signing keys) under SUBJECT_ENCRYPTION_KEY. Keep the "
        "previous key in SUBJECT_ENCRYPTION_OLD_KEYS until this reports nothing left under it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument(
            "--check", action="store_true", help="Only count values still under older keys."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        kid = crypto.current_key_id().hex()
        left = 0
        for spec in encrypted_fields():
            if not options["check"]:
                progress = reencrypt_field(spec, batch_size=options["batch_size"])
                self.stdout.write(
                    f"{spec.label}: {progress.scanned} scanned, {progress.rewritten} re-encrypted"
                )
                if progress.rewritten:
                    audit_record(
                        actor=Actor.system("rotate_encryption_key"),
                        action="encryption.rotate",
                        target_type=spec.label,
                        detail={"key_id": kid, "rewritten": progress.rewritten},
                    )
            count = remaining_under_old_keys(spec)
            left += count
            if count:
                self.stdout.write(f"{spec.label}: {count} still under an older key")
        if left:
            raise CommandError(f"{left} values are still under older keys; run again.")
        self.stdout.write(
            self.style.SUCCESS(
                f"every encrypted value is under key {kid}; older keys may leave "
                "SUBJECT_ENCRYPTION_OLD_KEYS"
            )
        )
