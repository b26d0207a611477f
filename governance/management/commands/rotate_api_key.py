"""`python manage.py rotate_api_key --name CLIENT`: a new key, printed once; old keys live on."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from governance import services
from governance.models import ApiClient


class Command(BaseCommand):
    help = (
        "Issue a new key for an API client and print it once. The old keys keep working "
        "until revoked (--revoke-old), or until --old-expire-hours have passed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="The API client's name.")
        parser.add_argument("--old-expire-hours", type=float, default=None)
        parser.add_argument(
            "--revoke-old", action="store_true", help="Revoke every key but the newest (no new)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        client = ApiClient.objects.filter(name=options["name"]).first()
        if client is None:
            raise CommandError(f"No API client named {options['name']!r}.")
        if options["revoke_old"]:
            revoked = services.api_keys_revoke_all_but_newest(client=client)
            self.stdout.write(f"{revoked} old keys revoked")
            return
        hours = options["old_expire_hours"]
        expire_at = timezone.now() + timedelta(hours=hours) if hours is not None else None
        self.stdout.write(services.api_key_rotate(client=client, old_keys_expire_at=expire_at))
