from django.apps import AppConfig


class RetentionConfig(AppConfig):
    name = "retention"
    verbose_name = "Retention and rights"

    def ready(self) -> None:
        # The Art. 30 records of processing name the retention that applies to each data use.
        from consent.decisions.selectors import records_of_processing_register
        from governance.dashboard import dashboard_register
        from governance.reencrypt import register_encrypted_field
        from retention.dashboard import retention_panels
        from retention.models import AccessRequest, ErasureRequest
        from retention.selectors import retention_for_purpose

        dashboard_register(retention_panels)
        records_of_processing_register(
            lambda data_use: {"retention": retention_for_purpose(data_use.purpose)}
        )
        # Rotation must reach these too: an erasure opened before a rotation reads its
        # identifier after it. Associated data as in retention.services.rights.
        register_encrypted_field(
            ErasureRequest, "identifier_encrypted", lambda r: r.subject_key.encode()
        )
        register_encrypted_field(AccessRequest, "export_encrypted", lambda r: str(r.pk).encode())
