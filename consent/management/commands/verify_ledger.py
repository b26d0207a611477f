"""`python manage.py verify_ledger`: re-computes every subject's hash chain, names breaks."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from consent.ledger.verify import ledger_verify, ledger_verify_recorded


class Command(BaseCommand):
    help = "Re-computes the consent ledger's hash chains; exits 1 naming every break."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--subject", type=int, action="append", help="Subject id (repeat).")
        parser.add_argument("--json", action="store_true", help="One JSON object per break.")

    def handle(self, *args: Any, **options: Any) -> None:
        # A whole-ledger run is recorded (the admin dashboard shows the last one).
        subjects = options["subject"]
        report = (
            ledger_verify(subject_ids=subjects)
            if subjects
            else ledger_verify_recorded(trigger="command")
        )
        breaks = report.breaks
        for b in breaks:
            self.stdout.write(json.dumps(b.as_dict()) if options["json"] else f"BREAK {b}")
        summary = f"{report.subjects} subjects, {report.events} events, {len(breaks)} breaks"
        if breaks:
            raise CommandError(f"ledger verification failed: {summary}")
        self.stdout.write(self.style.SUCCESS(f"ledger verified: {summary}"))
