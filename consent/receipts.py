"""Consent receipts: what was recorded under one receipt id, in Kantara CR v1.1 terms,
with the ISO/IEC TS 27560 record fields beside them."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from consent.models import ConsentContext, ConsentEvent, IndicationMethod, LegalBasis
from governance.api.common import iso
from governance.signing import TYP_CONSENT_RECEIPT, jws_sign, jws_verify

KANTARA_VERSION = "KI-CR-v1.1.0"
ISO_27560_SCHEMA = "ISO/IEC TS 27560:2023"

DPV_CONSENT_STATUS = {
    "granted": "dpv:ConsentGiven",
    "refused": "dpv:ConsentRefused",
    "withdrawn": "dpv:ConsentWithdrawn",
    "expired": "dpv:ConsentExpired",
}

_COLLECTION = {
    IndicationMethod.BUTTON: "web form: clicked a button",
    IndicationMethod.CHECKBOX: "web form: ticked a box",
    IndicationMethod.SIGNED_FORM: "signed form",
    IndicationMethod.API: "API call relaying the person's choice",
    IndicationMethod.GPC: "Global Privacy Control signal",
    IndicationMethod.IMPORT: "imported record",
    IndicationMethod.SYSTEM: "recorded by the consent service",
}


def receipt_signed(
    *, events: list[ConsentEvent], context: ConsentContext | None, subject_id: str | None
) -> dict[str, Any]:
    """The receipt and, in `jws`, a compact JWS (ES256, with kid) over every other field."""
    body = receipt_build(events=events, context=context, subject_id=subject_id)
    return {**body, "jws": jws_sign(body, typ=TYP_CONSENT_RECEIPT)}


def receipt_verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """The receipt signed in `token`; raises governance.signing.JwsInvalid for anything
    else, another kind of signed document (snapshot manifest, dataset card) included."""
    return jws_verify(token, jwks, typ=TYP_CONSENT_RECEIPT)


def _record(events: list[ConsentEvent], jurisdiction: str, subject_key: str) -> dict[str, Any]:
    """The ISO/IEC TS 27560 consent record fields, as far as they apply (W3C DPV terms)."""
    first = events[0]
    controller = settings.CONTROLLER
    return {
        "schema_version": ISO_27560_SCHEMA,
        "record_id": str(first.receipt_id),
        # Pseudonymous: the keyed hash, never an e-mail or account name.
        "pii_principal_pseudonym": subject_key,
        "controller": {"name": controller["name"], "contact": controller["email"]},
        "jurisdiction": jurisdiction,
        "notice": [
            {"purpose": e.decided_purpose.key, "version": e.notice_version, "language": e.language}
            for e in events
        ],
        "processing": [
            {
                "purpose": e.decided_purpose.key,
                "dpv_purpose": e.decided_purpose.dpv_concept,
                "legal_basis": e.decided_purpose.legal_basis,
                "personal_data_categories": list(e.decided_purpose.data_categories),
                "recipients": [],
                "storage_duration": (
                    str(e.decided_purpose.consent_ttl)
                    if e.decided_purpose.consent_ttl
                    else "until withdrawn"
                ),
                "processing_location": jurisdiction,
                "transfers": [],
            }
            for e in events
        ],
        "events": [
            {
                "purpose": e.decided_purpose.key,
                "state": DPV_CONSENT_STATUS.get(e.action, e.action),
                "timestamp": iso(e.effective_at),
                "valid_until": iso(e.expires_at),
                "expressed_by": e.given_by,
                "consent_type": "dpv:ExpressedConsent",
                "indication_method": e.indication_method,
                "hash": e.hash,
            }
            for e in events
        ],
        "withdrawal": {
            "method": "API: POST /api/v1/subjects/{subject_id}/withdrawals, or the banner",
            "policy_url": settings.PRIVACY_POLICY_URL,
        },
    }


def receipt_build(
    *, events: list[ConsentEvent], context: ConsentContext | None, subject_id: str | None
) -> dict[str, Any]:
    first = events[0]
    controller = settings.CONTROLLER
    jurisdiction = (context.jurisdiction if context else "") or settings.DEFAULT_JURISDICTION
    purposes = []
    for e in events:
        p = e.decided_purpose
        purposes.append(
            {
                "purpose": p.name,
                "purposeKey": p.key,
                "purposeCategory": [p.dpv_concept] if p.dpv_concept else [],
                "consentType": "EXPLICIT",
                "piiCategory": list(p.data_categories),
                "primaryPurpose": p.legal_basis == LegalBasis.CONTRACT,
                "termination": iso(e.expires_at) if e.expires_at else "on withdrawal",
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
        "recorded_at": iso(first.recorded_at),
        "events": [
            {
                "event_id": str(e.id),
                "purpose": e.decided_purpose.key,
                "action": e.action,
                "notice_version": e.notice_version,
                "language": e.language,
                "effective_at": iso(e.effective_at),
                "expires_at": iso(e.expires_at),
                "source": e.source,
                "indication_method": e.indication_method,
                "given_by": e.given_by,
                "hash": e.hash,
            }
            for e in events
        ],
        "record": _record(events, jurisdiction or "", first.subject.key),
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
