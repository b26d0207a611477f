"""Every admin change leaves an AuditEvent: who (staff user), what, when, from where.

The admin funnels additions, changes and deletions (single and bulk) through
ModelAdmin.log_addition/log_change/log_deletions; the mixin adds
an audit row there, inside the admin's own transaction. `audit_every_admin` wraps every
registered ModelAdmin, third-party ones (users, groups, beat schedules) included, so a
model added later is covered without anyone remembering to.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from governance.actors import Actor
from governance.audit import audit_record
from governance.net import client_ip


def _admin_audit(request: HttpRequest, action: str, obj: Any, message: Any = "") -> None:
    if isinstance(message, str) and message.startswith("["):
        with contextlib.suppress(ValueError):
            message = json.loads(message)
    meta = obj._meta
    audit_record(
        actor=Actor.for_staff(request.user),
        action=action,
        target_type=f"{meta.app_label}.{meta.model_name}",
        target_id=str(obj.pk),
        ip=client_ip(request),
        # Change messages name the changed fields, never their values.
        detail={"repr": str(obj)[:200], "message": message},
    )


class AuditedAdminMixin:
    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        entry = super().log_addition(request, obj, message)  # type: ignore[misc]
        _admin_audit(request, "admin.add", obj, message)
        return entry

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        entry = super().log_change(request, obj, message)  # type: ignore[misc]
        _admin_audit(request, "admin.change", obj, message)
        return entry

    def log_deletions(self, request: HttpRequest, queryset: Any) -> Any:
        entries = super().log_deletions(request, queryset)  # type: ignore[misc]
        for obj in queryset:
            _admin_audit(request, "admin.delete", obj)
        return entries


def audit_every_admin(site: admin.AdminSite) -> None:
    """Swaps each registered ModelAdmin for a subclass with the audit mixin (idempotent)."""
    registry = site._registry
    for model, model_admin in list(registry.items()):
        if isinstance(model_admin, AuditedAdminMixin):
            continue
        cls = type(model_admin)
        audited = type(f"Audited{cls.__name__}", (AuditedAdminMixin, cls), {})
        registry[model] = audited(model, site)


def staff_access_audit(
    request: HttpRequest,
    *,
    what: str,
    subject_key: str = "",
    target_id: str = "",
    action: str = "admin.view",
    detail: dict[str, Any] | None = None,
) -> None:
    """Records that a staff user looked at a person (a decrypted identifier, a history, a
    rights request) or downloaded their data: who, whom (by keyed hash), when, from where.

    `action` is `admin.view`, `admin.find` or `admin.download`; `what` names the page. The
    row names the person by `subject_key` only, so their erasure removes it with the rest.
    """
    audit_record(
        actor=Actor.for_staff(request.user),
        action=action,
        target_type=what,
        target_id=target_id,
        ip=client_ip(request),
        detail={**({"subject_key": subject_key} if subject_key else {}), **(detail or {})},
    )
