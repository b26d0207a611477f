from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self) -> None:
        # Registers the OpenAPI description of the Bearer key authentication.
        from django.contrib import admin

        from governance.admin_audit import audit_every_admin
        from governance.api import schema_auth  # noqa: F401

        # Every app's admin module is imported by now (django.contrib.admin comes first).
        audit_every_admin(admin.site)
