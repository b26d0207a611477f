from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self) -> None:
        # Every app's admin module is imported by now (django.contrib.admin comes first).
        from django.contrib import admin

        from governance.admin_audit import audit_every_admin

        audit_every_admin(admin.site)
