"""`python manage.py export_consents [--output FILE] [--namespace NS]`: everyone's consent
events as ISO/IEC TS 27560 records in W3C DPV JSON-LD (`import_consents --format jsonld`
reads the file back)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from consent.imports.selectors import records_stream
from consent.models import Subject


class Command(BaseCommand):
    help = "Exports every subject's consent records as ISO/IEC TS 27560 JSON-LD."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", help="A file to write (default: standard output).")
        parser.add_argument("--namespace", choices=Subject.Namespace.values)

    def handle(self, *args: Any, **options: Any) -> None:
        pieces = records_stream(namespace=options["namespace"])
        if options["output"]:
            with open(options["output"], "w", encoding="utf-8") as out:
                out.writelines(pieces)
        else:
            for piece in pieces:
                self.stdout.write(piece, ending="")
