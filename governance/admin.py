"""Admin for API clients: keys are shown once, on creation, and stored only hashed.

New secrets (API keys, webhook signing secrets) are rendered into the one response that
created them, never passed through `django.contrib.messages`: its cookie is signed, not
encrypted, so a secret in a message would sit readable in the browser and in any proxy log
of cookies.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers

from governance import services, webhooks
from governance.actors import Actor
from governance.models import (
    ApiClient,
    ApiKey,
    AuditEvent,
    IdempotencyRecord,
    OutboxEvent,
    Scope,
    SigningKey,
    StaffTotpDevice,
    WebhookDelivery,
    WebhookSubscription,
)
from governance.net import client_ip
from governance.outbox import EVENT_TYPES

_SECRETS_ATTR = "_governance_secrets_shown_once"

# The index is the privacy office's dashboard (governance.dashboard), the app list below it.
# Set here rather than by a template named admin/index.html: django.contrib.admin comes first
# in INSTALLED_APPS, so its own index.html would win the template lookup.
admin.site.index_template = "admin/governance/index.html"


def _secret_remember(request: HttpRequest, label: str, secret: str) -> None:
    """Keeps a new secret on the request until the admin builds its response."""
    secrets: list[tuple[str, str]] = getattr(request, _SECRETS_ATTR, [])
    secrets.append((label, secret))
    setattr(request, _SECRETS_ATTR, secrets)


def secrets_shown_once_response(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    *,
    title: str,
    secrets: list[tuple[str, str]],
    continue_url: str,
) -> TemplateResponse:
    """A page showing each (label, secret) once; nothing about them is stored or cached."""
    response = TemplateResponse(
        request,
        "admin/governance/secrets_shown_once.html",
        {
            **model_admin.admin_site.each_context(request),
            "title": title,
            "secrets": secrets,
            "continue_url": continue_url,
        },
    )
    add_never_cache_headers(response)
    return response


def _response_with_pending_secrets(
    model_admin: admin.ModelAdmin, request: HttpRequest, obj: Any, title: str
) -> TemplateResponse | None:
    secrets: list[tuple[str, str]] = getattr(request, _SECRETS_ATTR, [])
    if not secrets:
        return None
    meta = obj._meta
    continue_url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
    return secrets_shown_once_response(
        model_admin, request, title=title, secrets=secrets, continue_url=continue_url
    )


class ApiClientForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices, widget=forms.CheckboxSelectMultiple, required=False
    )

    class Meta:
        model = ApiClient
        fields = ["name", "kind", "scopes", "rate_limit_per_minute", "active"]


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    fields = ["prefix", "created_at", "expires_at", "revoked_at", "last_used_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    form = ApiClientForm
    list_display = ["name", "kind", "scopes", "active", "last_used_at", "created_at"]
    list_filter = ["kind", "active"]
    search_fields = ["name"]
    readonly_fields = ["last_used_at", "created_at"]
    inlines = [ApiKeyInline]
    actions = ["issue_new_key", "revoke_old_keys"]

    def save_model(self, request: HttpRequest, obj: ApiClient, form: Any, change: bool) -> None:
        if change:
            obj.scopes = services.scopes_validate(obj.scopes)
            super().save_model(request, obj, form, change)
            return
        client, key = services.api_client_create(
            name=obj.name,
            scopes=obj.scopes,
            kind=obj.kind,
            rate_limit_per_minute=obj.rate_limit_per_minute,
        )
        obj.pk = client.pk
        obj.created_at = client.created_at
        _secret_remember(request, f"API key for {client.name}", key)

    def response_add(
        self, request: HttpRequest, obj: ApiClient, post_url_continue: str | None = None
    ) -> HttpResponse:
        page = _response_with_pending_secrets(self, request, obj, f"API client {obj.name} added")
        return page or super().response_add(request, obj, post_url_continue)

    @admin.action(description="Issue a new key (the old ones keep working until revoked)")
    def issue_new_key(self, request: HttpRequest, queryset: Any) -> TemplateResponse:
        secrets = [
            (
                f"New key for {client.name}",
                services.api_key_issue(
                    client=client, actor=Actor.for_staff(request.user), ip=client_ip(request)
                ),
            )
            for client in queryset
        ]
        return secrets_shown_once_response(
            self,
            request,
            title="New API keys",
            secrets=secrets,
            continue_url=reverse("admin:governance_apiclient_changelist"),
        )

    @admin.action(description="Finish rotation: revoke every key but the newest")
    def revoke_old_keys(self, request: HttpRequest, queryset: Any) -> None:
        for client in queryset:
            revoked = services.api_keys_revoke_all_but_newest(
                client=client, actor=Actor.for_staff(request.user), ip=client_ip(request)
            )
            messages.info(request, f"{client.name}: {revoked} old keys revoked.")


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin):
    list_display = ["client", "key", "status_code", "created_at"]
    list_filter = ["client"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class WebhookSubscriptionForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https")
    event_types = forms.MultipleChoiceField(
        choices=[(t, t) for t in EVENT_TYPES],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="None ticked: every event type.",
    )

    class Meta:
        model = WebhookSubscription
        fields = ["name", "url", "event_types", "active"]

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            return webhooks.url_check(url)
        except webhooks.WebhookUrlRefused as exc:
            raise forms.ValidationError(str(exc)) from exc


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(admin.ModelAdmin):
    form = WebhookSubscriptionForm
    list_display = ["name", "url", "event_types", "active", "created_at"]
    list_filter = ["active"]
    search_fields = ["name", "url"]

    def save_model(
        self, request: HttpRequest, obj: WebhookSubscription, form: Any, change: bool
    ) -> None:
        if change:
            obj.event_types = services.webhook_event_types_validate(obj.event_types)
            super().save_model(request, obj, form, change)
            return
        created, secret = services.webhook_subscription_create(
            url=obj.url,
            event_types=obj.event_types,
            name=obj.name,
            actor=Actor.for_staff(request.user),
            ip=client_ip(request),
        )
        obj.pk = created.pk
        obj.created_at = created.created_at
        obj.secret_encrypted = created.secret_encrypted
        _secret_remember(request, f"Signing secret for {created}", secret)

    def response_add(
        self, request: HttpRequest, obj: WebhookSubscription, post_url_continue: str | None = None
    ) -> HttpResponse:
        page = _response_with_pending_secrets(
            self, request, obj, f"Webhook subscription {obj} added"
        )
        return page or super().response_add(request, obj, post_url_continue)


class HistoryAdmin(admin.ModelAdmin):
    """Rows written only by services: visible, never edited here."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(HistoryAdmin):
    list_display = [
        "event",
        "subscription",
        "seq",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "delivered_at",
    ]
    list_filter = ["status", "subscription"]
    search_fields = ["event__id", "subject_key"]
    list_select_related = ["event", "subscription"]
    actions = ["redeliver"]

    @admin.action(description="Redeliver (back in line, attempts reset)")
    def redeliver(self, request: HttpRequest, queryset: Any) -> None:
        ids = services.webhook_delivery_redeliver(
            deliveries=list(queryset), actor=Actor.for_staff(request.user), ip=client_ip(request)
        )
        messages.info(request, f"{len(ids)} deliveries queued again.")


@admin.register(OutboxEvent)
class OutboxEventAdmin(HistoryAdmin):
    list_display = ["id", "event_type", "seq", "created_at", "dispatched_at"]
    list_filter = ["event_type"]
    search_fields = ["id", "subject_key"]
    exclude = ["subject_identifier_encrypted"]


class StaffUserFilter(admin.SimpleListFilter):
    """Narrows the trail to what one staff user did or looked at."""

    title = "staff user"
    parameter_name = "staff"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        actors = (
            AuditEvent.objects.filter(actor_type="staff")
            .values_list("actor_id", "actor_label")
            .distinct()
            .order_by("actor_label", "actor_id")
        )
        return [(actor_id, label or actor_id) for actor_id, label in actors]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        if self.value():
            return queryset.filter(actor_type="staff", actor_id=self.value())
        return queryset


@admin.register(AuditEvent)
class AuditEventAdmin(HistoryAdmin):
    list_display = [
        "at",
        "actor_type",
        "actor_label",
        "actor_key",
        "action",
        "target_type",
        "target_id",
    ]
    list_filter = [
        StaffUserFilter,
        "action",
        "actor_type",
        "target_type",
        ("at", admin.DateFieldListFilter),
    ]
    search_fields = ["actor_label", "=actor_id", "=actor_key", "=target_id", "action"]
    date_hierarchy = "at"
    readonly_fields = [
        "at",
        "actor_type",
        "actor_id",
        "actor_label",
        "actor_key",
        "action",
        "target_type",
        "target_id",
        "ip_hash",
        "detail",
    ]


@admin.register(SigningKey)
class SigningKeyAdmin(HistoryAdmin):
    list_display = ["kid", "algorithm", "created_at", "retired_at", "last_signed_at"]
    exclude = ["private_key_encrypted"]
    readonly_fields = [
        "kid",
        "algorithm",
        "public_jwk",
        "created_at",
        "retired_at",
        "last_signed_at",
    ]


@admin.register(StaffTotpDevice)
class StaffTotpDeviceAdmin(HistoryAdmin):
    """Who has enrolled an authenticator (the seed is never shown). Deleting one revokes it:
    that person cannot sign in until an operator enrols a new one (enrol_totp)."""

    list_display = ["user", "name", "created_at", "last_used_at", "throttling_failure_count"]
    search_fields = ["user__username"]
    list_select_related = ["user"]
    exclude = ["key_encrypted"]
    readonly_fields = [
        "user",
        "name",
        "confirmed",
        "created_at",
        "last_used_at",
        "throttling_failure_count",
        "throttling_failure_timestamp",
    ]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return admin.ModelAdmin.has_delete_permission(self, request, obj)
