"""The admin of erasure and access requests: created with a verification note, listed
by due date (overdue first), extended once with a reason, access exports downloaded
decrypted and audited."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

from consent import identity
from consent.models import Subject
from consent.person.admin import EXPORT_PERSON
from governance.actors import Actor
from governance.admin_audit import staff_access_audit
from governance.errors import DomainError
from retention import selectors
from retention.models import (
    AccessRequest,
    ErasureRequest,
    RequestStatus,
)
from retention.services import requests_notes, rights


class OverdueFilter(admin.SimpleListFilter):
    title = "overdue"
    parameter_name = "overdue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Overdue")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.exclude(status=RequestStatus.COMPLETE).filter(due_at__lt=timezone.now())
        return queryset


class RightsRequestForm(forms.ModelForm):
    """A request taken by staff: whose (exact identifier, only its keyed hash is kept) and
    how their identity was verified (kept encrypted)."""

    subject_id = forms.CharField(
        label="Identifier",
        max_length=identity.MAX_IDENTIFIER_LENGTH,
        strip=False,  # identifiers are compared exactly
        help_text="The person's identifier, exactly; only its keyed hash is stored.",
    )
    verification_note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="How the requester's identity was verified (stored encrypted, erased with "
        "the person).",
    )

    namespace = forms.ChoiceField(choices=Subject.Namespace.choices, initial="account")

    class Meta:
        model = ErasureRequest
        fields = ["subject_id", "namespace", "verification_note"]

    def clean_subject_id(self) -> str:
        value: str = self.cleaned_data.get("subject_id") or ""
        if not identity.identifier_ok(value):
            raise forms.ValidationError(
                "Not a subject identifier: control characters or lone surrogates."
            )
        return value

    def clean_verification_note(self) -> str:
        note: str = self.cleaned_data.get("verification_note") or ""
        if not note.strip():
            raise forms.ValidationError("Say how the requester's identity was verified.")
        return note


class ExtendForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why more time is needed (GDPR Art. 12(3): complexity or number of "
        "requests); the person must be told within the first month. Stored encrypted.",
    )


_OPEN = [RequestStatus.PENDING, RequestStatus.RUNNING, RequestStatus.HELD, RequestStatus.FAILED]


class RightsRequestAdmin(admin.ModelAdmin):
    """Requests are opened here through the services (with the verification note), listed
    overdue first, extended once with a reason; every field stays read-only."""

    list_display = [
        "id",
        "namespace",
        "status",
        "created_at",
        "due_at",
        "overdue",
        "extended_at",
        "completed_at",
        "attempts",
    ]
    list_filter = [OverdueFilter, "status"]
    form = RightsRequestForm
    actions = ["requeue"]
    kind = ""
    create: Any = None

    def get_ordering(self, request: HttpRequest) -> list[Any]:
        # Overdue first, then the open ones by due date, then the finished ones.
        urgency = Case(
            When(status__in=_OPEN, due_at__lt=timezone.now(), then=Value(0)),
            When(status__in=_OPEN, then=Value(1)),
            default=Value(2),
            output_field=IntegerField(),
        )
        return [urgency.asc(), "due_at"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["subject_id", "namespace", "verification_note"]
        return [
            "id",
            "subject_key",
            "namespace",
            "status",
            "created_at",
            "due_at",
            "extended_at",
            "extended_by",
            "identity_verified",
            "extension_reason",
            "completed_at",
            "attempts",
            "error",
            *self.detail_fields,
        ]

    detail_fields: tuple[str, ...] = ()

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj) if obj is not None else []

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The change list's actions need it; every field stays read-only.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    # Not named after the creation form's field: a read-only name equal to a form field
    # would take that field out of the form.
    @admin.display(description="how identity was verified")
    def identity_verified(self, obj: Any) -> str:
        return requests_notes.note_read(obj, "verification_note_encrypted") or "-"

    @admin.display(description="extension reason")
    def extension_reason(self, obj: Any) -> str:
        return requests_notes.note_read(obj, "extension_reason_encrypted") or "-"

    @admin.display(boolean=True, description="overdue")
    def overdue(self, obj: Any) -> bool:
        return bool(obj.status != RequestStatus.COMPLETE and obj.due_at < timezone.now())

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            return
        created = self.create(
            subject_id=form.cleaned_data["subject_id"],
            namespace=form.cleaned_data["namespace"],
            verification_note=form.cleaned_data["verification_note"],
            actor=Actor.for_staff(request.user),
        )
        for name in ("id", "subject_key", "status", "created_at", "due_at"):
            setattr(obj, name, getattr(created, name))

    @admin.action(description="Queue again (held since released, or failed)")
    def requeue(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for found in queryset.filter(status__in=[RequestStatus.HELD, RequestStatus.FAILED]):
            rights.rights_request_requeue(request=found, actor=Actor.for_staff(request.user))

    # --- detail views: audited; the extension ---------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path(
                "<uuid:pk>/extend/",
                self.admin_site.admin_view(self.extend_view),
                name=f"{name}_extend",
            ),
            *self.extra_urls(name),
            *super().get_urls(),
        ]

    def extra_urls(self, name: str) -> list[URLPattern]:
        return []

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        obj = self.get_object(request, object_id)
        if obj is not None:
            staff_access_audit(
                request,
                what=f"{self.kind}_request",
                subject_key=obj.subject_key,
                target_id=str(obj.pk),
            )
        extra = {
            **(extra_context or {}),
            "can_extend": obj is not None
            and obj.extended_at is None
            and obj.status != RequestStatus.COMPLETE
            and self._may_change(request),
            "extend_url": f"admin:{self.opts.app_label}_{self.opts.model_name}_extend",
        }
        return super().change_view(request, object_id, form_url, extra)

    def _may_change(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}"))  # type: ignore[union-attr]

    def extend_view(self, request: HttpRequest, pk: Any) -> HttpResponse:
        if not self._may_change(request):
            raise PermissionDenied
        found = get_object_or_404(self.model, pk=pk)
        form = ExtendForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                requests_notes.rights_request_extend(
                    request=found,
                    reason=form.cleaned_data["reason"],
                    actor=Actor.for_staff(request.user),
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, "Due date extended by two months.")
                return HttpResponseRedirect(
                    reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Extend {found}",
            "request_obj": found,
            "form": form,
        }
        return TemplateResponse(request, "admin/retention/extend.html", context)


@admin.register(ErasureRequest)
class ErasureRequestAdmin(RightsRequestAdmin):
    kind = "erasure"
    create = staticmethod(rights.erasure_request_create)
    detail_fields = ("progress", "decision_ids", "tombstone_id")
    change_form_template = "admin/retention/rights_request_change_form.html"


class AccessRequestForm(RightsRequestForm):
    class Meta(RightsRequestForm.Meta):
        model = AccessRequest  # type: ignore[assignment]  # the same fields, the other model


@admin.register(AccessRequest)
class AccessRequestAdmin(RightsRequestAdmin):
    kind = "access"
    form = AccessRequestForm
    create = staticmethod(rights.access_request_create)
    change_form_template = "admin/retention/rights_request_change_form.html"

    def extra_urls(self, name: str) -> list[URLPattern]:
        return [
            path(
                "<uuid:pk>/export.json",
                self.admin_site.admin_view(self.export_view),
                name=f"{name}_export",
            )
        ]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        extra = {
            **(extra_context or {}),
            "can_export": request.user.has_perm(EXPORT_PERSON),  # type: ignore[union-attr]
            "export_url": "admin:retention_accessrequest_export",
        }
        return super().change_view(request, object_id, form_url, extra)

    def export_view(self, request: HttpRequest, pk: Any) -> HttpResponse:
        """The finished export, decrypted on the fly, as a download; audited."""
        if not (self.has_view_permission(request) and request.user.has_perm(EXPORT_PERSON)):  # type: ignore[union-attr]
            raise PermissionDenied
        found = get_object_or_404(AccessRequest, pk=pk)
        export = selectors.access_export(found)
        if export is None:
            raise Http404("The export is not ready.")
        staff_access_audit(
            request,
            action="admin.download",
            what="access_export",
            subject_key=found.subject_key,
            target_id=str(found.pk),
        )
        response = HttpResponse(json.dumps(export, indent=2), content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="access-{found.pk}.json"'
        add_never_cache_headers(response)
        return response
