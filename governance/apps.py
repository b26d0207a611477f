from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self) -> None:
        # Registers the OpenAPI description of the Bearer key authentication.
        from governance.api import schema_auth  # noqa: F401
