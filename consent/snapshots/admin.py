"""Admin for lakehouse snapshots: what each one is, who made it, how far its build got and
which decisions drew on it, read-only. Deleting one goes through the API's service (file
removed, key destroyed, audited with the staff user), after a confirmation.

The pseudonym key is never loaded (the column is deferred), shown or offered, not even
encrypted; nor is the file: pipelines fetch it through the API with their own key.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import pluralize
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from consent.models import Decision, Snapshot, SnapshotChunk
from consent.snapshots import services
from consent.snapshots.selectors import snapshot_status
from governance.actors import Actor
from governance.admin import HistoryAdmin

DELETE_SNAPSHOT = "consent.delete_snapshot"
VIEW_DECISIONS = "consent.view_decision"
_LIVE = (Snapshot.Status.PENDING, Snapshot.Status.READY)
# Decisions named on a snapshot's page; the rest are one link away.
_DECISIONS_SHOWN = 10


@admin.register(Snapshot)
class SnapshotAdmin(HistoryAdmin):
    """Snapshots are made by pipelines through the API: nothing is added or edited here.
    Deleting one needs consent.delete_snapshot and leaves the row, as expired."""

    list_display = [
        "created_at",
        "created_by",
        "purpose",
        "data_use",
        "as_of",
        "namespace",
        "key_kind",
        "status_now",
        "allowed_count",
        "denied_count",
        "expires_at",
        "short_sha256",
    ]
    list_filter = ["status", "purpose", "key_kind"]
    list_select_related = ["purpose", "data_use"]
    date_hierarchy = "created_at"
    search_fields = ["=id", "actor_label", "=file_sha256"]
    search_help_text = "A snapshot's id or file hash (exactly), or the API client's name."
    fields = readonly_fields = (
        "id",
        "created_at",
        "actor_type",
        "created_by",
        "purpose",
        "data_use",
        "as_of",
        "namespace",
        "key_kind",
        "default_allowed",
        "status_now",
        "allowed_count",
        "denied_count",
        "build_progress",
        "error",
        "file_sha256",
        "expires_at",
        "used_by",
    )
    actions = ["destroy_snapshots"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Snapshot]:
        # The key stays in the database: no page, action or error report holds it.
        return super().get_queryset(request).defer("pseudonym_key_encrypted")

    def has_destroy_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Not has_delete_permission: Django's own delete would drop the row and leave the file.
        return bool(request.user.has_perm(DELETE_SNAPSHOT))  # type: ignore[union-attr]

    # --- columns --------------------------------------------------------------------------

    @admin.display(description="created by", ordering="actor_label")
    def created_by(self, obj: Snapshot) -> str:
        return obj.actor_label or obj.actor_type

    @admin.display(description="status", ordering="status")
    def status_now(self, obj: Snapshot) -> str:
        # As the API reads it: past expires_at is expired even before the beat's sweep.
        return str(Snapshot.Status(snapshot_status(obj)).label)

    @admin.display(description="file sha256")
    def short_sha256(self, obj: Snapshot) -> str:
        return f"{obj.file_sha256[:12]}…" if obj.file_sha256 else "-"

    @admin.display(description="build (ranges written)")
    def build_progress(self, obj: Snapshot) -> str:
        counts = SnapshotChunk.objects.filter(snapshot=obj).aggregate(
            total=Count("pk"),
            done=Count("pk", filter=Q(status=SnapshotChunk.Status.DONE)),
            running=Count("pk", filter=Q(status=SnapshotChunk.Status.RUNNING)),
        )
        text = f"{counts['done']} of {counts['total']}"
        if counts["running"] and obj.status == Snapshot.Status.PENDING:
            text += f" ({counts['running']} being written)"
        return text

    @admin.display(description="used by (usage uploads)")
    def used_by(self, obj: Snapshot) -> str:
        decisions = Decision.objects.filter(snapshot=obj).select_related("data_use")
        total = decisions.count()
        if not total:
            return "No usage recorded."
        shown = decisions.order_by("-created_at")[:_DECISIONS_SHOWN]
        everything = reverse("admin:consent_decision_changelist") + f"?snapshot__exact={obj.pk}"
        items = format_html_join(
            "",
            '<li><a href="{}">{}</a>: model {}, {} people, {}</li>',
            (
                (
                    reverse("admin:consent_decision_change", args=[d.pk]),
                    d.created_at.strftime("%Y-%m-%d %H:%M"),
                    d.model or "-",
                    d.total,
                    d.data_use.key if d.data_use else "no data use",
                )
                for d in shown
            ),
        )
        return format_html(
            '<ul style="margin-left:0">{}</ul><a href="{}">All {} decision{}</a>',
            items,
            everything,
            total,
            pluralize(total),
        )

    # --- deletion: the API's service, after a confirmation --------------------------------

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<uuid:pk>/destroy/",
                self.admin_site.admin_view(self.destroy_view),
                name="consent_snapshot_destroy",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        obj = self.get_object(request, object_id)
        extra = {
            **(extra_context or {}),
            "can_destroy": obj is not None
            and obj.status in _LIVE
            and self.has_destroy_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra)

    def _destroy(self, request: HttpRequest, snapshots: list[Snapshot]) -> int:
        actor = Actor.for_staff(request.user)
        return sum(services.snapshot_delete(snapshot=s, actor=actor) for s in snapshots)

    def _confirm(
        self, request: HttpRequest, snapshots: list[Snapshot], *, post_to: str, hidden: Any
    ) -> TemplateResponse:
        return TemplateResponse(
            request,
            "admin/consent/snapshot/destroy_confirm.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": "Delete snapshots (file and key)",
                "snapshots": snapshots,
                "post_to": post_to,
                "hidden": hidden,
            },
        )

    @admin.action(description="Delete snapshot (file and key)", permissions=["destroy"])
    def destroy_snapshots(
        self, request: HttpRequest, queryset: QuerySet[Snapshot]
    ) -> TemplateResponse | None:
        live = list(queryset.filter(status__in=_LIVE).select_related("purpose"))
        if not live:
            messages.info(request, "Nothing to delete: those snapshots have already ended.")
            return None
        if request.POST.get("confirmed") != "yes":
            hidden = [("action", "destroy_snapshots")] + [
                (helpers.ACTION_CHECKBOX_NAME, str(s.pk)) for s in live
            ]
            return self._confirm(request, live, post_to="", hidden=hidden)
        destroyed = self._destroy(request, live)
        messages.success(request, f"{destroyed} snapshots deleted: files removed, keys destroyed.")
        return None

    def destroy_view(self, request: HttpRequest, pk: Any) -> HttpResponse:
        if not self.has_destroy_permission(request):
            raise PermissionDenied
        snapshot = get_object_or_404(self.get_queryset(request), pk=pk)
        change_url = reverse("admin:consent_snapshot_change", args=[snapshot.pk])
        if snapshot.status not in _LIVE:
            messages.info(request, "This snapshot has already ended: nothing to delete.")
            return HttpResponseRedirect(change_url)
        if request.method == "POST" and request.POST.get("confirmed") == "yes":
            self._destroy(request, [snapshot])
            messages.success(request, "Snapshot deleted: file removed, key destroyed.")
            return HttpResponseRedirect(change_url)
        return self._confirm(request, [snapshot], post_to=request.path, hidden=[])
