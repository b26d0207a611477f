"""Admin for policies (editable, validated like the API) and holds; runs and rights
requests read-only, overdue requests flagged."""

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
from consent.person.registry import (
    PersonAction,
    PersonActionForm,
    PersonSection,
    person_action_register,
    person_section_register,
)
from governance.actors import Actor
from governance.admin import HistoryAdmin as ReadOnlyAdmin
from governance.admin_audit import staff_access_audit
from governance.api.common import iso
from governance.errors import DomainError
from retention import selectors
from retention.models import (
    AccessRequest,
    ErasureRequest,
    Lease,
    LegalHold,
    PurgeRun,
    PurgeRunItem,
    RequestStatus,
    RetentionPolicy,
)
from retention.registry import targets
from retention.services import enforcement, holds, policies, rights


class RetentionPolicyForm(forms.ModelForm):
    target = forms.ChoiceField(choices=())

    class Meta:
        model = RetentionPolicy
        fields = [
            "name",
            "target",
            "keep_for",
            "action",
            "condition",
            "batch_size",
            "enabled",
            "purpose",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["target"].choices = [(n, f"{n} — {t.label}") for n, t in targets().items()]  # type: ignore[attr-defined]

    def policy_input(self) -> policies.PolicyInput:
        data = self.cleaned_data
        return policies.PolicyInput(
            name=data.get("name", ""),
            target=data.get("target", ""),
            keep_for=data.get("keep_for"),
            action=data.get("action", ""),
            condition=data.get("condition") or {},
            batch_size=data.get("batch_size") or 0,
            enabled=bool(data.get("enabled")),
            purpose=data["purpose"].key if data.get("purpose") else None,
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        try:
            policies.policy_validate(self.policy_input())
        except DomainError as exc:
            raise forms.ValidationError(f"{exc.message} {exc.detail or ''}") from exc
        return data


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(admin.ModelAdmin):
    form = RetentionPolicyForm
    list_display = ["name", "target", "keep_for", "action", "purpose", "batch_size", "enabled"]
    list_filter = ["enabled", "action"]
    search_fields = ["name", "target"]
    actions = ["dry_run", "run_now"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Disable a policy instead: runs keep naming it.
        return False

    def save_model(
        self, request: HttpRequest, obj: RetentionPolicy, form: Any, change: bool
    ) -> None:
        # Through the services, like the API: the same validation and the policy's audit row.
        actor = Actor.for_staff(request.user)
        data = form.policy_input()
        if change:
            saved = policies.policy_update(policy=obj, data=data, actor=actor)
        else:
            saved = policies.policy_create(data=data, actor=actor)
        obj.pk = saved.pk
        obj.created_at, obj.updated_at = saved.created_at, saved.updated_at

    @admin.action(description="Dry run the selected policies (report what would go)")
    def dry_run(self, request: HttpRequest, queryset: QuerySet[RetentionPolicy]) -> None:
        run = enforcement.retention_enforce(
            dry_run=True, trigger="admin", policy_ids=list(queryset.values_list("pk", flat=True))
        ).run
        for item in run.items.all():
            self.message_user(
                request,
                f"{item.policy_name}: {item.removed} would go, {item.held} held "
                f"(of {item.examined} past {item.cutoff:%Y-%m-%d %H:%M}).",
                messages.INFO,
            )

    @admin.action(description="Enforce now (queue a run of every enabled policy)")
    def run_now(self, request: HttpRequest, queryset: QuerySet[RetentionPolicy]) -> None:
        run = enforcement.run_queue(
            dry_run=False, trigger="admin", actor=Actor.for_staff(request.user)
        )
        self.message_user(request, f"Run {run.pk} queued.", messages.INFO)


class LegalHoldForm(forms.ModelForm):
    subject_id = forms.CharField(
        required=False,
        max_length=identity.MAX_IDENTIFIER_LENGTH,
        strip=False,  # identifiers are compared exactly: " a" is not "a"
        help_text="The subject's identifier; only its keyed hash is stored.",
    )

    def clean_subject_id(self) -> str:
        value: str = self.cleaned_data.get("subject_id") or ""
        if value and not identity.identifier_ok(value):
            raise forms.ValidationError(
                "Not a subject identifier: control characters or lone surrogates."
            )
        return value

    class Meta:
        model = LegalHold
        fields = ["subject_id", "namespace", "policy", "reason"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if bool(data.get("subject_id")) == bool(data.get("policy")):
            raise forms.ValidationError("A legal hold names either a subject or a policy.")
        return data


@admin.register(LegalHold)
class LegalHoldAdmin(admin.ModelAdmin):
    form = LegalHoldForm
    list_display = ["__str__", "reason", "created_by", "created_at", "released_at"]
    list_filter = ["released_at"]
    actions = ["release"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return (
            ["subject_key", "namespace", "policy", "reason", "created_by", "created_at"]
            if obj
            else []
        )

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj:
            return [
                "subject_key",
                "namespace",
                "policy",
                "reason",
                "created_by",
                "created_at",
                "released_at",
            ]
        return ["subject_id", "namespace", "policy", "reason"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: LegalHold, form: Any, change: bool) -> None:
        if change:
            return
        subject_id = form.cleaned_data.get("subject_id") or None
        try:
            hold = holds.hold_place(
                reason=form.cleaned_data["reason"],
                actor=Actor.for_staff(request.user),
                subject_id=subject_id,
                namespace=form.cleaned_data["namespace"],
                policy=form.cleaned_data.get("policy"),
            )
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        obj.pk = hold.pk

    @admin.action(description="Release the selected holds")
    def release(self, request: HttpRequest, queryset: QuerySet[LegalHold]) -> None:
        for hold in queryset.filter(released_at__isnull=True):
            holds.hold_release(hold=hold, actor=Actor.for_staff(request.user))


class PurgeRunItemInline(admin.TabularInline):
    model = PurgeRunItem
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "policy_name",
        "target",
        "action",
        "cutoff",
        "status",
        "examined",
        "removed",
        "held",
        "files_removed",
        "chunks",
        "duration_ms",
        "error",
    )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PurgeRun)
class PurgeRunAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "dry_run",
        "trigger",
        "status",
        "started_at",
        "removed",
        "files_removed",
        "held",
    ]
    list_filter = ["status", "dry_run", "trigger"]
    inlines = [PurgeRunItemInline]


@admin.register(Lease)
class LeaseAdmin(ReadOnlyAdmin):
    list_display = ["name", "holder", "expires_at"]


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
        return rights.note_read(obj, "verification_note_encrypted") or "-"

    @admin.display(description="extension reason")
    def extension_reason(self, obj: Any) -> str:
        return rights.note_read(obj, "extension_reason_encrypted") or "-"

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
                rights.rights_request_extend(
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


# --- the Person page's rights requests and legal holds (consent/person/registry.py) -------


def _requests_of(model: Any, subject: Subject) -> dict[str, Any]:
    found = model.objects.filter(subject_key=subject.key, namespace=subject.namespace)
    return {
        "requests": list(found.order_by("-created_at")),
        "change_url": f"admin:{model._meta.app_label}_{model._meta.model_name}_change",
        "now": timezone.now(),
    }


def _requests_export(model: Any) -> Any:
    def export(subject: Subject) -> list[dict[str, Any]]:
        return [
            {
                "id": str(r.pk),
                "status": r.status,
                "created_at": iso(r.created_at),
                "due_at": iso(r.due_at),
                "extended_at": iso(r.extended_at),
                "completed_at": iso(r.completed_at),
            }
            for r in _requests_of(model, subject)["requests"]
        ]

    return export


def _holds_of(subject: Subject) -> QuerySet[LegalHold]:
    return LegalHold.objects.filter(subject_key=subject.key).order_by("-created_at")


person_section_register(
    PersonSection(
        key="erasure_requests",
        title="Erasure requests",
        template="admin/retention/person/requests.html",
        context=lambda subject: _requests_of(ErasureRequest, subject),
        permission="retention.view_erasurerequest",
        order=60,
        export=_requests_export(ErasureRequest),
    )
)
person_section_register(
    PersonSection(
        key="access_requests",
        title="Access requests",
        template="admin/retention/person/requests.html",
        context=lambda subject: _requests_of(AccessRequest, subject),
        permission="retention.view_accessrequest",
        order=61,
        export=_requests_export(AccessRequest),
    )
)
person_section_register(
    PersonSection(
        key="legal_holds",
        title="Legal holds",
        template="admin/retention/person/holds.html",
        context=lambda subject: {"holds": list(_holds_of(subject))},
        permission="retention.view_legalhold",
        order=70,
        export=lambda subject: [
            {
                "id": h.pk,
                "reason": h.reason,
                "created_by": h.created_by,
                "created_at": iso(h.created_at),
                "released_at": iso(h.released_at),
            }
            for h in _holds_of(subject)
        ],
    )
)


class VerificationNoteForm(PersonActionForm):
    verification_note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="How the requester's identity was verified (stored encrypted).",
    )


def _open_request(kind: str) -> Any:
    create = rights.erasure_request_create if kind == "erasure" else rights.access_request_create

    def run(subject: Subject, identifier: str, data: dict[str, Any], actor: Actor) -> str:
        created = create(
            subject_id=identifier,
            namespace=subject.namespace,
            verification_note=data["verification_note"],
            actor=actor,
        )
        return f"{kind.title()} request {created.pk} opened, due {created.due_at:%Y-%m-%d}."

    return run


class HoldPlaceForm(PersonActionForm):
    reason = forms.CharField(max_length=500, help_text="Why the data must be kept.")


class HoldLiftForm(PersonActionForm):
    hold = forms.ModelChoiceField(queryset=LegalHold.objects.none())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["hold"].queryset = _holds_of(self.subject).filter(  # type: ignore[attr-defined]
            released_at__isnull=True
        )


def _hold_place(subject: Subject, identifier: str, data: dict[str, Any], actor: Actor) -> str:
    hold = holds.hold_place(
        reason=data["reason"], actor=actor, subject_id=identifier, namespace=subject.namespace
    )
    return f"Legal hold {hold.pk} placed."


def _hold_lift(subject: Subject, identifier: str, data: dict[str, Any], actor: Actor) -> str:
    holds.hold_release(hold=data["hold"], actor=actor)
    return f"Legal hold {data['hold'].pk} lifted."


person_action_register(
    PersonAction(
        key="erasure_request",
        label="Open an erasure request",
        permission="retention.add_erasurerequest",
        form=VerificationNoteForm,
        run=_open_request("erasure"),
        confirm="An erasure removes this person's data from every registered store and "
        "cannot be undone once it has run.",
        order=30,
    )
)
person_action_register(
    PersonAction(
        key="access_request",
        label="Open an access request",
        permission="retention.add_accessrequest",
        form=VerificationNoteForm,
        run=_open_request("access"),
        order=31,
    )
)
person_action_register(
    PersonAction(
        key="hold_place",
        label="Place a legal hold",
        permission="retention.add_legalhold",
        form=HoldPlaceForm,
        run=_hold_place,
        order=40,
    )
)
person_action_register(
    PersonAction(
        key="hold_lift",
        label="Lift a legal hold",
        permission="retention.change_legalhold",
        form=HoldLiftForm,
        run=_hold_lift,
        confirm="Once lifted, purges and erasure may remove the data the hold kept.",
        order=41,
        applies=lambda subject: _holds_of(subject).filter(released_at__isnull=True).exists(),
    )
)
