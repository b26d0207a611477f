"""`python manage.py enforce_retention [--dry-run] [--policy NAME ...]`: one run, now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from retention.models import RetentionPolicy
from retention.services.enforcement import retention_enforce


class Command(BaseCommand):
    help = "Enforce retention policies now (or report what would go with --dry-run)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Delete nothing; report.")
        parser.add_argument("--policy", action="append", default=None, help="Policy name.")

    def handle(self, *args: Any, **options: Any) -> None:
        policy_ids = None
        if options["policy"]:
            found = dict(
                RetentionPolicy.objects.filter(name__in=options["policy"]).values_list("name", "pk")
            )
            missing = sorted(set(options["policy"]) - set(found))
            if missing:
                raise CommandError(f"Unknown policy: {', '.join(missing)}")
            policy_ids = list(found.values())
        run = retention_enforce(
            dry_run=options["dry_run"], trigger="command", policy_ids=policy_ids
        ).run
        verb = "would remove" if run.dry_run else "removed"
        for item in run.items.all():
            self.stdout.write(
                f"{item.policy_name:<45} {item.target:<35} examined {item.examined:>9} "
                f"{verb} {item.removed:>9} held {item.held:>7} {item.status}"
                + (f" ({item.error})" if item.error else "")
            )
        self.stdout.write(f"run {run.pk}: {run.status}, {verb} {run.removed}, held {run.held}")
        if run.status == "skipped":
            self.stdout.write("another enforcement run holds the lease; nothing done")
