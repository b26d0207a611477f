"""Admin for purposes and notices (editable) and for the ledger and states (read-only)."""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse

from consent import identity, services
from consent.crypto_display import identifier_or_erased
from consent.ledger.verify import ledger_verify
from consent.models import (
    BannerText,
    ConsentContext,
    ConsentEvent,
    ConsentState,
    NoticeText,
    NoticeVersion,
    Property,
    Purpose,
    Subject,
    SubjectLink,
)
from consent.person.admin import PersonAdminMixin
from governance.admin import HistoryAdmin as ReadOnlyAdmin
from governance.admin_audit import staff_access_audit


class NoticeVersionInline(admin.TabularInline):
    model = NoticeVersion
    extra = 0
    fields = readonly_fields = ("version", "material", "published_at", "text_hash")
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Purpose)
class PurposeAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "legal_basis", "consent_ttl", "gpc_opt_out", "active"]
    list_filter = ["legal_basis", "gpc_opt_out", "active"]
    search_fields = ["key", "name"]
    inlines = [NoticeVersionInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # The key is what every record names: it never changes once created.
        return ["key", "created_at"] if obj else ["created_at"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Purpose, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        created = services.purpose_create(
            key=obj.key,
            name=obj.name,
            legal_basis=obj.legal_basis,
            description=obj.description,
            dpv_concept=obj.dpv_concept,
            tcf_purpose_ids=obj.tcf_purpose_ids,
            data_categories=obj.data_categories,
            consent_ttl=obj.consent_ttl,
            gpc_opt_out=obj.gpc_opt_out,
        )
        obj.pk = created.pk
        obj.created_at = created.created_at


class AtLeastOneTextFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        filled = [
            f for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE", False)
        ]
        if not filled:
            raise forms.ValidationError("A notice version needs its text in at least one language.")


class NoticeTextInline(admin.StackedInline):
    model = NoticeText
    formset = AtLeastOneTextFormSet
    extra = 1

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(NoticeVersion)
class NoticeVersionAdmin(admin.ModelAdmin):
    """New versions are added here; a published version is never edited."""

    list_display = ["purpose", "version", "material", "published_at", "text_hash"]
    list_filter = ["purpose", "material"]
    inlines = [NoticeTextInline]
    readonly_fields = ["version", "text_hash"]
    fields = ["purpose", "version", "material", "published_at", "text_hash"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: NoticeVersion, form: Any, change: bool) -> None:
        # The texts arrive with the inline, after this; publish with them in save_related.
        request._pending_notice = obj  # type: ignore[attr-defined]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        obj: NoticeVersion = request._pending_notice  # type: ignore[attr-defined]
        texts: dict[str, tuple[str, str]] = {}
        for formset in formsets:
            for f in formset.forms:
                data = getattr(f, "cleaned_data", None) or {}
                if data.get("language") and not data.get("DELETE"):
                    texts[data["language"]] = (data["title"], data["body"])
        created = services.notice_version_publish(
            purpose=obj.purpose,
            texts=texts,
            material=obj.material,
            published_at=obj.published_at,
        )
        obj.pk = created.pk
        obj.version = created.version
        # The texts were saved by the service, not by the formsets: nothing left to report.
        for formset in formsets:
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []


class ConsentStateInline(admin.TabularInline):
    model = ConsentState
    extra = 0
    fields = readonly_fields = ("purpose", "status", "notice_version", "since", "expires_at", "gpc")
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SubjectViewAuditMixin:
    """Audits staff views of a person's rows: each change (detail) page, and the list when
    it is narrowed to one subject (a `subject` filter) or searched. `subject_keys_of` says
    whom a page shows."""

    def subject_keys_of(self, obj: Any) -> list[str]:
        return [obj.subject.key]

    def listed_subject_keys(self, request: HttpRequest) -> list[str] | None:
        """The subjects a list narrowed by the query string shows (None: not narrowed)."""
        pks = [request.GET.get(k, "") for k in request.GET if k.split("__")[0] == "subject"]
        if not pks:
            return None
        return list(
            Subject.objects.filter(pk__in=[p for p in pks if p.isdigit()]).values_list(
                "key", flat=True
            )
        )

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        obj = self.get_object(request, object_id)  # type: ignore[attr-defined]
        if obj is not None and request.method == "GET":
            what = obj._meta.label_lower
            for key in self.subject_keys_of(obj):
                staff_access_audit(request, what=what, subject_key=key, target_id=str(obj.pk))
        return super().change_view(request, object_id, form_url, extra_context)  # type: ignore[misc]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        keys = self.listed_subject_keys(request)
        if keys is not None:
            what = f"{self.model._meta.label_lower}_list"  # type: ignore[attr-defined]
            for key in keys or [""]:
                staff_access_audit(request, what=what, subject_key=key)
        return super().changelist_view(request, extra_context)  # type: ignore[misc]


@admin.register(Subject)
class SubjectAdmin(SubjectViewAuditMixin, PersonAdminMixin, ReadOnlyAdmin):
    """Search by typing the identifier itself: it is hashed on the way in, never stored.
    The Person pages (consent/person/admin.py) hang off its URLs."""

    list_display = ["id", "namespace", "short_key", "created_at", "erased_at"]
    list_filter = ["namespace", "erased_at"]
    search_fields = ["key"]
    search_help_text = "Type a subject identifier exactly; it is hashed before the lookup."
    fields = readonly_fields = (
        "namespace",
        "identifier",
        "key",
        "key_version",
        "created_at",
        "erased_at",
        "last_seq",
        "chain_head",
    )
    inlines = [ConsentStateInline]
    actions = ["verify_chain"]

    @admin.action(
        description="Verify the ledger chain of the selected subjects", permissions=["view"]
    )
    def verify_chain(self, request: HttpRequest, queryset: QuerySet[Subject]) -> None:
        report = ledger_verify(subject_ids=queryset.values_list("pk", flat=True))
        breaks = report.breaks
        for b in breaks:
            messages.error(request, f"Chain break: {b}")
        summary = f"{report.subjects} subjects, {report.events} events, {len(breaks)} breaks."
        messages.add_message(request, messages.ERROR if breaks else messages.SUCCESS, summary)

    @admin.display(description="key")
    def short_key(self, obj: Subject) -> str:
        return obj.key[:16] + "…"

    def subject_keys_of(self, obj: Subject) -> list[str]:
        return [obj.key]

    def listed_subject_keys(self, request: HttpRequest) -> list[str] | None:
        # A search by identifier finds a person: audited like the Person page's search.
        q = request.GET.get("q", "")
        return [identity.subject_key(q)] if q else None

    @admin.display(description="identifier")
    def identifier(self, obj: Subject) -> str:
        return identifier_or_erased(obj)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Subject], search_term: str
    ) -> tuple[QuerySet[Subject], bool]:
        if not search_term:
            return queryset, False
        return queryset.filter(key=identity.subject_key(search_term)), False


@admin.register(ConsentEvent)
class ConsentEventAdmin(SubjectViewAuditMixin, ReadOnlyAdmin):
    list_display = [
        "effective_at",
        "subject",
        "purpose",
        "action",
        "notice_version",
        "source",
        "indication_method",
        "actor_label",
    ]
    list_filter = ["action", "source", "purpose", "indication_method"]
    list_select_related = ["subject", "purpose"]
    date_hierarchy = "recorded_at"
    search_fields = ["=receipt_id", "=id"]

    def listed_subject_keys(self, request: HttpRequest) -> list[str] | None:
        narrowed = super().listed_subject_keys(request)
        q = request.GET.get("q", "")
        if not q:
            return narrowed
        # A receipt or event id names a person's events: whose they are is what was seen.
        found, _ = self.get_search_results(request, ConsentEvent.objects.all(), q)
        keys = set(found.values_list("subject__key", flat=True)[:100])
        return sorted(keys | set(narrowed or []))


@admin.register(ConsentState)
class ConsentStateAdmin(SubjectViewAuditMixin, ReadOnlyAdmin):
    list_display = ["subject", "purpose", "status", "notice_version", "since", "expires_at"]
    list_filter = ["status", "purpose"]
    list_select_related = ["subject", "purpose"]


@admin.register(ConsentContext)
class ConsentContextAdmin(ReadOnlyAdmin):
    list_display = ["receipt_id", "locale", "jurisdiction", "created_at"]
    search_fields = ["=receipt_id"]


# --- data uses (editable records of processing) and decisions (read-only history) ---------

from consent.models import DataUse, Decision  # noqa: E402


@admin.register(DataUse)
class DataUseAdmin(admin.ModelAdmin):
    list_display = ("key", "name", "purpose", "owner", "active", "created_at")
    list_filter = ("purpose", "active")
    search_fields = ("key", "name", "owner")
    readonly_fields = ("created_at",)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        from governance.actors import Actor
        from governance.audit import audit_record

        super().save_model(request, obj, form, change)
        audit_record(
            actor=Actor.for_staff(request.user),
            action="data_use.change" if change else "data_use.create",
            target_type="data_use",
            target_id=obj.key,
            detail={"purpose": obj.purpose.key, "owner": obj.owner},
        )


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "purpose",
        "data_use",
        "mode",
        "status",
        "total",
        "allowed_count",
        "lineage",
        "erased_since",
    )
    list_filter = ("purpose", "mode", "status", "lineage")
    list_select_related = ("purpose", "data_use")


# --- banner properties ----------------------------------------------------------------------


class BannerTextInline(admin.StackedInline):
    model = BannerText
    extra = 0


class OriginsField(forms.CharField):
    """Origins as text, one per line (commas work too; a JSON list is still read)."""

    widget = forms.Textarea(attrs={"rows": 4, "cols": 60, "placeholder": "https://shop.example"})

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError as exc:
                raise forms.ValidationError("One origin per line, or a JSON list.") from exc
            if not isinstance(parsed, list) or not all(isinstance(o, str) for o in parsed):
                raise forms.ValidationError("One origin per line, or a JSON list.")
            return parsed
        return [part.strip() for part in re.split(r"[\n,]", text) if part.strip()]


class PropertyForm(forms.ModelForm):
    allowed_origins = OriginsField(
        required=False,
        help_text="The sites the banner may call from, one per line, e.g. https://shop.example",
    )

    class Meta:
        model = Property
        fields = ["name", "allowed_origins", "default_language", "purposes", "active"]

    def clean_allowed_origins(self) -> list[str]:
        from consent.banner.services import origins_validate
        from governance.errors import DomainError

        raw = self.cleaned_data.get("allowed_origins") or []
        try:
            return origins_validate(raw)
        except DomainError as exc:
            raise forms.ValidationError(exc.message) from exc


@admin.register(Property)
class PropertyAdmin(admin.ModelAdmin):
    form = PropertyForm
    list_display = ["name", "default_language", "key_prefixes", "active"]
    filter_horizontal = ["purposes"]
    readonly_fields = ["api_client", "key_prefixes", "created_at"]
    inlines = [BannerTextInline]
    actions = ["issue_publishable_key"]

    @admin.display(description="publishable keys")
    def key_prefixes(self, obj: Property) -> str:
        if obj.api_client is None:
            return "-"
        keys = obj.api_client.keys.filter(revoked_at__isnull=True)
        return ", ".join(f"{k.prefix}…" for k in keys) or "-"

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if not change and form.instance.api_client is None:
            self._issue(request, form.instance)

    def _issue(self, request: HttpRequest, prop: Property) -> None:
        from consent.banner.services import property_key_issue

        key = property_key_issue(prop=prop, actor=services.Actor.for_staff(request.user))
        self.message_user(
            request,
            f"Publishable key for {prop.name} (shown only now, copy it): {key}",
            level=messages.WARNING,
        )

    @admin.action(description="Issue a new publishable key (shown once)")
    def issue_publishable_key(self, request: HttpRequest, queryset: QuerySet[Property]) -> None:
        for prop in queryset:
            self._issue(request, prop)


@admin.register(SubjectLink)
class SubjectLinkAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "device_subject", "account_subject", "property", "carried"]


# Lakehouse snapshots and imports: their features' own admin modules.
from consent.imports import admin as imports_admin  # noqa: E402, F401
from consent.snapshots import admin as snapshots_admin  # noqa: E402, F401
