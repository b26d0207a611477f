from typing import Any

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.db.models.signals import post_migrate


def _audit_floor_sync(sender: Any, using: str = "default", **kwargs: Any) -> None:
    from governance.audit import audit_floor_sync

    audit_floor_sync(using=using)


class StaffAdminConfig(admin_apps.AdminConfig):
    """Django's admin, whose default site asks staff for an authenticator code."""

    default = False  # named in INSTALLED_APPS; "governance" itself is GovernanceConfig
    default_site = "governance.admin_site.StaffAdminSite"


def _roles_sync(sender: Any, using: str = "default", **kwargs: Any) -> None:
    from django.apps import apps as global_apps
    from django.db import router

    from governance.roles import roles_sync

    state = kwargs.get("apps") or global_apps
    # post_migrate is sent once per app, each creating its own permissions: sync after the
    # last app's, when every permission exists; never on a database auth does not live in.
    last = [a for a in global_apps.get_app_configs() if a.models_module is not None][-1]
    if sender.label == last.label and router.allow_migrate_model(
        using, state.get_model("auth", "Group")
    ):
        roles_sync(apps=state, using=using)


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self) -> None:
        from django.contrib import admin

        from governance import signing, webhooks
        from governance.admin_audit import audit_every_admin
        from governance.admin_site import guard_every_admin_action
        from governance.api import schema_auth  # noqa: F401  (OpenAPI for Bearer keys)
        from governance.dashboard import dashboard_register, webhook_panels
        from governance.memo import memos_clear_on_change
        from governance.models import (
            ApiClient,
            ApiKey,
            OutboxEvent,
            SigningKey,
            StaffTotpDevice,
            WebhookSubscription,
            staff_totp_aad,
        )
        from governance.reencrypt import register_encrypted_field

        # The database's own floor under audit purges follows the setting at every migrate.
        post_migrate.connect(_audit_floor_sync, sender=self, dispatch_uid="audit_floor_sync")
        # The staff role groups follow governance.roles at every migrate, new permissions
        # included.
        post_migrate.connect(_roles_sync, dispatch_uid="roles_sync")
        # A saved key or client clears this process's memo of key lookups at once.
        memos_clear_on_change(ApiKey, ApiClient)
        # Every app's admin module is imported by now (django.contrib.admin comes first).
        audit_every_admin(admin.site)
        guard_every_admin_action(admin.site)
        dashboard_register(webhook_panels)
        register_encrypted_field(
            OutboxEvent, "subject_identifier_encrypted", lambda e: e.subject_key.encode()
        )
        register_encrypted_field(
            WebhookSubscription, "secret_encrypted", lambda s: webhooks.secret_aad(s.pk)
        )
        register_encrypted_field(
            SigningKey, "private_key_encrypted", lambda k: signing.private_key_aad(k.kid)
        )
        register_encrypted_field(
            StaffTotpDevice, "key_encrypted", lambda d: staff_totp_aad(d.user_id)
        )
