"""Creates an API client with one key and prints the key, the only time it is shown."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance import services
from governance.errors import DomainError
from governance.models import ApiClient


class Command(BaseCommand):
    help = "Create an API client (secret key by default) and print its key once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument(
            "--scopes", default="", help="Comma-separated, e.g. consent:write,checks"
        )
        parser.add_argument("--kind", default=ApiClient.Kind.SECRET, choices=ApiClient.Kind.values)
        parser.add_argument("--rate-limit", type=int, default=None, help="Requests per minute.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            _, key = services.api_client_create(
                name=options["name"],
                scopes=options["scopes"].split(","),
                kind=options["kind"],
                rate_limit_per_minute=options["rate_limit"],
            )
        except DomainError as exc:
            raise CommandError(f"{exc.message} {exc.detail or ''}".strip()) from exc
        self.stdout.write(key)
