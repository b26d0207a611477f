from functools import partial

from django.apps import AppConfig


class RetentionConfig(AppConfig):
    name = "retention"
    verbose_name = "Retention and rights"

    def ready(self) -> None:
        # The Art. 30 records of processing name the retention that applies to each data use.
        from consent.decisions.selectors import records_of_processing_register
        from consent.rectification import subject_rekey_register
        from governance.dashboard import dashboard_register
        from governance.reencrypt import register_encrypted_field
        from retention.dashboard import retention_panels
        from retention.models import AccessRequest, ErasureRequest
        from retention.selectors import retention_for_purpose
        from retention.services.rekey import retention_subject_rekey
        from retention.services.rights import NOTE_FIELDS, note_aad

        dashboard_register(retention_panels)
        records_of_processing_register(
            lambda data_use: {"retention": retention_for_purpose(data_use.purpose)}
        )
        # An identifier rectification moves holds and rights requests to the new key.
        subject_rekey_register(retention_subject_rekey)
        # Rotation must reach these too: an erasure opened before a rotation reads its
        # identifier after it. Associated data as in retention.services.rights.
        register_encrypted_field(
            ErasureRequest, "identifier_encrypted", lambda r: r.subject_key.encode()
        )
        register_encrypted_field(AccessRequest, "export_encrypted", lambda r: str(r.pk).encode())
        for model in (ErasureRequest, AccessRequest):
            for field in NOTE_FIELDS:
                register_encrypted_field(model, field, partial(note_aad, field=field))
