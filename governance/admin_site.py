"""The admin site: staff sign in with a password and an authenticator code (TOTP), and an
admin action that changes data is offered only to staff who may change the model.

`StaffAdminSite` is Django's default site class here (governance.apps.StaffAdminConfig),
so `admin.site` stays the one object every app registers on.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_permission_codename
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest

from governance.staff import TotpRefused, staff_session_verified, staff_totp_verify

OTP_MESSAGES = {
    "missing": "Enter the six-digit code from your authenticator app.",
    "invalid": "That code is wrong or was already used: wait for the next one.",
    "throttled": "Too many wrong codes: wait a little, then try the next code.",
    "not_enrolled": "This account has no authenticator yet: an operator enrols one with "
    "`python manage.py enrol_totp USERNAME` (docs/staff-accounts.md).",
}
# Refusals that count as failed sign-ins toward django-axes' lockout, like a wrong password.
_COUNTED = {"invalid", "throttled"}


class StaffAuthenticationForm(AdminAuthenticationForm):
    """The admin's sign-in form with the code step: password first, then the code."""

    otp_token = forms.CharField(
        label="Authenticator code",
        required=False,
        max_length=10,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()  # the password (through django-axes) and is_staff
        user: Any = self.get_user()
        if user is None:  # a field left empty: its own error says so
            return cleaned
        try:
            device = staff_totp_verify(user=user, token=cleaned.get("otp_token") or "")
        except TotpRefused as refused:
            if refused.code in _COUNTED:
                user_login_failed.send(
                    sender=__name__,
                    credentials={"username": user.get_username()},
                    request=self.request,
                )
            raise forms.ValidationError(
                OTP_MESSAGES[refused.code], code=f"otp_{refused.code}"
            ) from None
        # django-otp marks the session verified by this device when Django logs the user in.
        user.otp_device = device
        return cleaned


class StaffAdminSite(admin.AdminSite):
    login_form = StaffAuthenticationForm
    login_template = "admin/governance/login.html"

    def has_permission(self, request: HttpRequest) -> bool:
        return super().has_permission(request) and staff_session_verified(request)


class ActionsNeedChangePermissionMixin:
    """An admin action that declares no permissions (`@admin.action(permissions=...)`) is
    offered only to staff holding the model's change permission: read-only roles see the
    rows, never the buttons that act on them. Read-only actions declare ["view"]."""

    opts: Any

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions: dict[str, Any] = super().get_actions(request)  # type: ignore[misc]
        change = f"{self.opts.app_label}.{get_permission_codename('change', self.opts)}"
        if request.user.has_perm(change):
            return actions
        return {
            name: entry
            for name, entry in actions.items()
            if getattr(entry[0], "allowed_permissions", None)
        }


def guard_every_admin_action(site: admin.AdminSite) -> None:
    """Swaps each registered ModelAdmin for a subclass with the guard (idempotent)."""
    registry = site._registry
    for model, model_admin in list(registry.items()):
        if isinstance(model_admin, ActionsNeedChangePermissionMixin):
            continue
        cls = type(model_admin)
        guarded = type(cls.__name__, (ActionsNeedChangePermissionMixin, cls), {})
        registry[model] = guarded(model, site)
