"""Admin for imports of consent records from other tools: what was imported, by whom, when,
and how far it got, read-only. An unfinished import can be queued again (the beat's resume,
for one import, audited with the staff user).

The records themselves are never shown: they wait encrypted in the import's batches until
applied, and nothing here reads or decrypts them.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.utils.text import Truncator

from consent.imports.services import import_resume
from consent.models import ConsentImport
from governance.actors import Actor
from governance.admin import HistoryAdmin


@admin.register(ConsentImport)
class ConsentImportAdmin(HistoryAdmin):
    """Imports come from the API or the import command: nothing is added, edited or
    deleted here (the row is the record of what was imported)."""

    list_display = [
        "created_at",
        "created_by",
        "format",
        "mapping",
        "status",
        "total",
        "ignored",
        "applied",
        "skipped",
        "progress",
        "completed_at",
        "short_error",
    ]
    list_filter = ["status", "format"]
    date_hierarchy = "created_at"
    search_fields = ["=id", "actor_label", "=file_sha256"]
    search_help_text = "An import's id or file hash (exactly), or who made it."
    fields = readonly_fields = (
        "id",
        "created_at",
        "actor_type",
        "created_by",
        "format",
        "mapping",
        "file_sha256",
        "status",
        "total",
        "ignored",
        "applied",
        "skipped",
        "progress",
        "progressed_at",
        "completed_at",
        "error",
    )
    actions = ["resume"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ConsentImport]:
        return (
            super()
            .get_queryset(request)
            .annotate(batches_done=Count("batches", filter=Q(batches__done=True)))
        )

    @admin.display(description="created by", ordering="actor_label")
    def created_by(self, obj: ConsentImport) -> str:
        return obj.actor_label or obj.actor_type

    @admin.display(description="batches applied")
    def progress(self, obj: Any) -> str:
        return f"{obj.batches_done} of {obj.batch_count}"

    @admin.display(description="error")
    def short_error(self, obj: ConsentImport) -> str:
        return Truncator(obj.error).chars(80) if obj.error else "-"

    @admin.action(description="Resume (queue the application again)")
    def resume(self, request: HttpRequest, queryset: QuerySet[ConsentImport]) -> None:
        actor = Actor.for_staff(request.user)
        resumed = sum(import_resume(consent_import=i, actor=actor) for i in queryset)
        left = queryset.count() - resumed
        messages.info(
            request,
            f"{resumed} imports queued again."
            + (f" {left} had already completed or failed: left as they are." if left else ""),
        )
