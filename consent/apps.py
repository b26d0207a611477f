from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.apps import AppConfig


def banner_cors_allowed(sender: Any, request: Any, **kwargs: Any) -> bool:
    """CORS for the banner endpoints answers only origins some active property lists.

    Preflights carry no key, so this cannot know the property; the views then refuse (403)
    a request whose origin is not one of its own key's property.
    """
    from consent.banner.selectors import origin_allowed_anywhere

    origin = request.headers.get("Origin")
    return bool(
        origin and request.path.startswith("/api/v1/banner/") and origin_allowed_anywhere(origin)
    )


def _ledger_gauges(now: datetime) -> Iterator[Any]:
    from consent.ledger.verify import ledger_verification_last
    from governance.metrics import Gauge

    age, breaks = ledger_verification_last(now=now)
    yield Gauge(
        "governance_ledger_verification_age_seconds",
        "Seconds since verify_ledger last walked every chain without a break (+Inf: never).",
        [((), age)],
    )
    yield Gauge(
        "governance_ledger_verification_breaks",
        "Breaks the last full verify_ledger run found (absent before the first run).",
        [((), breaks)] if breaks is not None else [],
    )


class ConsentConfig(AppConfig):
    name = "consent"
    verbose_name = "Consent"

    def ready(self) -> None:
        from corsheaders.signals import check_request_enabled
        from django.db.models.signals import m2m_changed

        from consent.dashboard import ledger_panels, report_panels
        from consent.models import (
            BannerText,
            ConsentImportBatch,
            NoticeText,
            NoticeVersion,
            Property,
            Purpose,
            Restriction,
            Snapshot,
            Subject,
            SubjectNote,
        )
        from consent.restriction.selectors import restriction_aad
        from governance.dashboard import dashboard_register
        from governance.memo import memos_clear, memos_clear_on_change
        from governance.metrics import scrape_gauges_register
        from governance.reencrypt import register_encrypted_field

        # A saved purpose, notice, property or banner text clears this process's memos (the
        # write path's purposes, the banners' origins, properties and texts) at once.
        memos_clear_on_change(Purpose, NoticeVersion, NoticeText, Property, BannerText)
        m2m_changed.connect(
            memos_clear, sender=Property.purposes.through, dispatch_uid="memo-property-purposes"
        )
        check_request_enabled.connect(banner_cors_allowed, dispatch_uid="consent-banner-cors")
        # Rates and re-consent are reports (officers, auditors); Support, which helps one
        # person at a time, does not get them (governance.roles).
        dashboard_register(report_panels, permission="consent.view_consent_reports")
        dashboard_register(ledger_panels, permission="consent.view_ledgerverification")
        # The identifier's associated data is its subject key (see consent.identity).
        register_encrypted_field(Subject, "identifier_encrypted", lambda s: s.key.encode())
        register_encrypted_field(SubjectNote, "note_encrypted", lambda n: str(n.pk).encode())
        from consent.imports.batches import batch_aad
        from consent.snapshots.keys import pseudonym_key_aad

        register_encrypted_field(
            ConsentImportBatch,
            "records_encrypted",
            lambda b: batch_aad(b.consent_import_id, b.index),
        )

        register_encrypted_field(
            Snapshot, "pseudonym_key_encrypted", lambda s: pseudonym_key_aad(s.pk)
        )
        # A restriction's reason: its associated data is the period's own id.
        register_encrypted_field(Restriction, "reason_encrypted", restriction_aad)
        scrape_gauges_register("ledger_verification", _ledger_gauges)
