"""`python manage.py import_consents FILE --format jsonl|csv|json|jsonld [--mapping M]
[--dry-run]`: checks the whole file, then applies it here, batch by batch, with a progress
bar; `--resume ID` applies what is left of an import (a worker that died)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from consent.errors import ImportInvalid
from consent.imports import check, services
from consent.imports.formats import FORMATS, mapping_load
from consent.models import ConsentImport
from governance.actors import Actor
from governance.errors import InvalidRequest

BAR_WIDTH = 30


class Command(BaseCommand):
    help = "Imports consent records; exits 1 naming every invalid row, having written nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", nargs="?", help="The file to import.")
        parser.add_argument("--format", choices=FORMATS, help="Default: the mapping's, or jsonl.")
        parser.add_argument("--mapping", help="A shipped mapping's name or a mapping file.")
        parser.add_argument("--dry-run", action="store_true", help="Check and count only.")
        parser.add_argument("--batch-size", type=int, default=services.BATCH_SIZE)
        parser.add_argument("--resume", metavar="ID", help="Apply what is left of an import.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["resume"]:
            self._apply(options["resume"])
            return
        if not options["file"]:
            raise CommandError("Name the file to import (or --resume ID).")
        try:
            mapping = mapping_load(options["mapping"]) if options["mapping"] else None
            fmt = options["format"] or (mapping.format if mapping else None) or "jsonl"
            with open(options["file"], "rb") as body:
                checked = check.import_check(body=body, fmt=fmt, mapping=mapping)
        except ImportInvalid as exc:
            for row in exc.detail["rows"]:
                where = f"row {row['row']}" + (f" item {row['item']}" if "item" in row else "")
                self.stderr.write(f"{where}: {'; '.join(row['reasons'])}")
            raise CommandError(exc.message) from exc
        except (InvalidRequest, OSError) as exc:
            raise CommandError(str(exc)) from exc
        if options["dry_run"]:
            result = check.import_dry_run(checked)
            self.stdout.write(
                f"dry run: {result.records} records valid ({result.new} new, "
                f"{result.already_imported} imported before), {result.ignored} left out by "
                "the mapping; nothing written"
            )
            return
        consent_import = services.import_create(
            actor=Actor.system("import_consents"),
            checked=checked,
            batch_size=options["batch_size"],
            queue=False,
        )
        self.stdout.write(f"import {consent_import.id}: {consent_import.total} records")
        self._apply(str(consent_import.id))

    def _apply(self, import_id: str) -> None:
        if not ConsentImport.objects.filter(pk=import_id).exists():
            raise CommandError(f"No import {import_id}.")
        services.import_apply(import_id=import_id, progress=self._bar)
        self.stdout.write("")
        done = ConsentImport.objects.get(pk=import_id)
        summary = {"status": done.status, "applied": done.applied, "skipped": done.skipped}
        if done.status != ConsentImport.Status.COMPLETED:
            raise CommandError(f"import {import_id} did not complete: {json.dumps(summary)}")
        self.stdout.write(
            self.style.SUCCESS(f"import {import_id} completed: {json.dumps(summary)}")
        )

    def _bar(self, consent_import: ConsentImport) -> None:
        total = max(consent_import.total, 1)
        done = consent_import.applied + consent_import.skipped
        filled = BAR_WIDTH * done // total
        self.stdout.write(
            f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{consent_import.total} "
            f"records ({consent_import.applied} applied, {consent_import.skipped} skipped)",
            ending="",
        )
        self.stdout.flush()
