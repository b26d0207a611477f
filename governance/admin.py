"""Admin for API clients: keys are shown once, on creation, and stored only hashed."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from governance import services
from governance.models import ApiClient, ApiKey, IdempotencyRecord, Scope


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
    actions = ["issue_new_key"]

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
        messages.warning(request, f"API key for {client.name}: {key} (shown once; store it now).")

    @admin.action(description="Issue a new key (the old ones keep working until revoked)")
    def issue_new_key(self, request: HttpRequest, queryset: Any) -> None:
        for client in queryset:
            key = services.api_key_issue(client=client)
            messages.warning(request, f"New key for {client.name}: {key} (shown once).")


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin):
    list_display = ["client", "key", "status_code", "created_at"]
    list_filter = ["client"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
