"""Consent receipts: what was recorded under one receipt id, in Kantara CR v1.1 terms,
with the ISO/IEC TS 27560 record fields beside them."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from consent.models import ConsentContext, ConsentEvent, IndicationMethod, LegalBasis

KANTARA_VERSION = "KI-CR-v1.1.0"

_COLLECTION = {
    IndicationMethod.BUTTON: "web form: clicked a button",
    IndicationMethod.CHECKBOX: "web form: ticked a box",
    IndicationMethod.SIGNED_FORM: "signed form",
    IndicationMethod.API: "API call relaying the person's choice",
    IndicationMethod.GPC: "Global Privacy Control signal",
    IndicationMethod.IMPORT: "imported record",
    IndicationMethod.SYSTEM: "recorded by the consent service",
}


def receipt_build(
    *, events: list[ConsentEvent], context: ConsentContext | None, subject_id: str | None
) -> dict[str, Any]:
    first = events[0]
    controller = settings.CONTROLLER
    jurisdiction = (context.jurisdiction if context else "") or settings.DEFAULT_JURISDICTION
    purposes = []
    for e in events:
        p = e.purpose
        purposes.append(
            {
                "purpose": p.name,
                "purposeKey": p.key,
                "purposeCategory": [p.dpv_concept] if p.dpv_concept else [],
                "consentType": "EXPLICIT",
                "piiCategory": list(p.data_categories),
                "primaryPurpose": p.legal_basis == LegalBasis.CONTRACT,
                "termination": e.expires_at.isoformat() if e.expires_at else "on withdrawal",
                "thirdPartyDisclosure": False,
                "thirdPartyName": "",
                "legalBasis": p.legal_basis,
                "noticeVersion": e.notice_version,
                "state": e.action,
            }
        )
    return {
        "receipt_id": str(first.receipt_id),
        "subject_id": subject_id,
        "recorded_at": first.recorded_at.isoformat(),
        "events": [
            {
                "event_id": str(e.id),
                "purpose": e.purpose.key,
                "action": e.action,
                "notice_version": e.notice_version,
                "language": e.language,
                "effective_at": e.effective_at.isoformat(),
                "expires_at": e.expires_at.isoformat() if e.expires_at else None,
                "source": e.source,
                "indication_method": e.indication_method,
                "given_by": e.given_by,
                "hash": e.hash,
            }
            for e in events
        ],
        "kantara": {
            "version": KANTARA_VERSION,
            "jurisdiction": jurisdiction,
            "consentTimestamp": int(first.effective_at.timestamp()),
            "collectionMethod": _COLLECTION.get(
                IndicationMethod(first.indication_method), first.indication_method
            ),
            "consentReceiptID": str(first.receipt_id),
            "language": first.language or "en",
            "piiPrincipalId": subject_id,
            "piiControllers": [
                {
                    "piiController": controller["name"],
                    "contact": controller["contact"],
                    "address": controller["address"],
                    "email": controller["email"],
                    "phone": controller["phone"],
                    "piiControllerUrl": controller["url"],
                }
            ],
            "policyUrl": settings.PRIVACY_POLICY_URL,
            "services": [{"service": controller["name"], "purposes": purposes}],
            "sensitive": False,
            "spiCat": [],
        },
    }
