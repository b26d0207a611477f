from django.apps import AppConfig


class ConsentConfig(AppConfig):
    name = "consent"
    verbose_name = "Consent"

    def ready(self) -> None:
        from consent.models import Subject
        from governance.reencrypt import register_encrypted_field

        # The identifier's associated data is its subject key (see consent.identity).
        register_encrypted_field(Subject, "identifier_encrypted", lambda s: s.key.encode())
