from collections.abc import Iterator
from datetime import datetime
from functools import partial
from typing import Any

from django.apps import AppConfig


def _rights_requests_gauges(now: datetime) -> Iterator[Any]:
    from governance.metrics import Gauge
    from retention.selectors import requests_open

    counts = requests_open(now=now)
    yield Gauge(
        "governance_rights_requests_open",
        "Erasure and access requests not yet done (pending, running or failed), by kind.",
        [((kind,), open_) for kind, (open_, _) in counts.items()],
        labels=["kind"],
    )
    yield Gauge(
        "governance_rights_requests_overdue",
        "Open erasure and access requests past their due date, by kind.",
        [((kind,), overdue) for kind, (_, overdue) in counts.items()],
        labels=["kind"],
    )


class RetentionConfig(AppConfig):
    name = "retention"
    verbose_name = "Retention and rights"

    def ready(self) -> None:
        # The Art. 30 records of processing name the retention that applies to each data use.
        from consent.decisions.selectors import records_of_processing_register
        from consent.rectification import subject_rekey_register
        from governance.dashboard import dashboard_register
        from governance.metrics import scrape_gauges_register
        from governance.reencrypt import register_encrypted_field
        from retention.dashboard import purge_panels, request_panels
        from retention.models import AccessRequest, ErasureRequest
        from retention.selectors import retention_for_purpose
        from retention.services.rekey import retention_subject_rekey
        from retention.services.requests_notes import NOTE_FIELDS, note_aad

        # Support sees the request counts (it opens requests); purge runs are for officers
        # and auditors.
        dashboard_register(request_panels, permission="retention.view_erasurerequest")
        dashboard_register(purge_panels, permission="retention.view_purgerun")
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
        scrape_gauges_register("rights_requests", _rights_requests_gauges)
