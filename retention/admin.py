"""Admin for policies (editable, validated like the API) and holds; runs and rights
requests read-only, overdue requests flagged."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from consent import identity
from governance.actors import Actor
from governance.admin import HistoryAdmin as ReadOnlyAdmin
from governance.errors import DomainError
from retention.models import (
    Lease,
    LegalHold,
    PurgeRun,
    PurgeRunItem,
    RetentionPolicy,
)
from retention.registry import targets
from retention.services import enforcement, holds, policies


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


# Rights requests, and retention's sections and actions on the Person page.
from retention import person_admin, rights_admin  # noqa: E402, F401
