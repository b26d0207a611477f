"""Reads of imports (their progress) and the export of ledger events as ISO/IEC TS 27560
consent records in W3C DPV JSON-LD: one `dpv:ConsentRecord` node per consent event, which
the import reads back with the `iso27560` mapping (consent/imports/mappings/iso27560.json).
The DPV consent statuses are the receipts' (consent.receipts.DPV_CONSENT_STATUS)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from consent import identity
from consent.models import ConsentEvent, ConsentImport, ConsentImportBatch, Subject
from consent.receipts import DPV_CONSENT_STATUS, ISO_27560_SCHEMA
from governance.api.common import iso
from governance.errors import NotFound

# --- imports ----------------------------------------------------------------------------


def import_get(*, import_id: str) -> ConsentImport:
    try:
        key = uuid.UUID(import_id)
    except ValueError:
        raise NotFound(detail={"id": import_id}) from None
    found = ConsentImport.objects.filter(pk=key).first()
    if found is None:
        raise NotFound(detail={"id": import_id})
    return found


def import_body(consent_import: ConsentImport) -> dict[str, Any]:
    """An import and its progress, as GET /api/v1/imports/{id} shows it."""
    done = ConsentImportBatch.objects.filter(consent_import=consent_import, done=True).count()
    return {
        "id": str(consent_import.id),
        "status": consent_import.status,
        "format": consent_import.format,
        "mapping": consent_import.mapping or None,
        "file_sha256": consent_import.file_sha256,
        "records": consent_import.total,
        "ignored": consent_import.ignored,
        "applied": consent_import.applied,
        "skipped": consent_import.skipped,
        "batches": {"done": done, "total": consent_import.batch_count},
        "created_at": iso(consent_import.created_at),
        "completed_at": iso(consent_import.completed_at),
        "error": consent_import.error or None,
    }


# --- the export -------------------------------------------------------------------------

JSONLD_MEDIA_TYPE = "application/ld+json"
# Our own terms (a subject's namespace, an event's source and hash) live under this IRI.
SERVICE_VOCABULARY = "urn:consent-service:"
CONTEXT = {
    "dpv": "https://w3id.org/dpv#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "cs": SERVICE_VOCABULARY,
}
_DPV_LEGAL_BASIS = {
    "consent": "dpv:Consent",
    "contract": "dpv:Contract",
    "legal_obligation": "dpv:LegalObligation",
    "vital_interest": "dpv:VitalInterest",
    "public_task": "dpv:PublicInterest",
    "legitimate_interest": "dpv:LegitimateInterest",
}


def record_node(event: ConsentEvent, *, identifier: str, namespace: str) -> dict[str, Any]:
    """One consent event as an ISO/IEC TS 27560 record in DPV terms."""
    purpose = event.decided_purpose
    return {
        "@id": f"urn:uuid:{event.id}",
        "@type": "dpv:ConsentRecord",
        "dct:conformsTo": ISO_27560_SCHEMA,
        "dct:identifier": str(event.id),
        "dct:created": iso(event.recorded_at),
        "dpv:hasDataSubject": {
            "@type": "dpv:DataSubject",
            "dct:identifier": identifier,
            "cs:namespace": namespace,
        },
        "dpv:hasDataController": {
            "@type": "dpv:DataController",
            "foaf:name": settings.CONTROLLER["name"],
        },
        "dpv:hasPurpose": {
            "@type": "dpv:Purpose",
            "dct:identifier": purpose.key,
            **({"dct:type": purpose.dpv_concept} if purpose.dpv_concept else {}),
        },
        "dpv:hasLegalBasis": {"@id": _DPV_LEGAL_BASIS.get(purpose.legal_basis, "dpv:LegalBasis")},
        "dpv:hasConsentStatus": {"@id": DPV_CONSENT_STATUS.get(event.action, event.action)},
        "dpv:isIndicatedAtTime": iso(event.effective_at),
        "dpv:hasIndicationMethod": event.indication_method,
        "dpv:isIndicatedBy": {
            "@type": "dpv:Guardian" if event.given_by == "guardian" else "dpv:DataSubject"
        },
        "dpv:hasNotice": {
            "@type": "dpv:ConsentNotice",
            "dct:hasVersion": event.notice_version,
            **({"dct:language": event.language} if event.language else {}),
        },
        "dct:valid": iso(event.expires_at),
        "cs:source": event.source,
        "cs:hash": event.hash,
    }


def _events(events: QuerySet[ConsentEvent]) -> Iterator[tuple[ConsentEvent, str, str]]:
    """The consent events, each subject's in chain order, with its identifier: one query
    read in chunks. Subjects whose identifier was erased cannot be named: left out."""
    current: int | None = None
    identifier: str | None = None
    ordered = (
        events.filter(purpose__isnull=False)
        .select_related("purpose", "subject")
        .order_by("subject_id", "seq")
    )
    for event in ordered.iterator(chunk_size=2000):
        if event.subject_id != current:
            current = event.subject_id
            subject = event.subject
            identifier = identity.decrypt_identifier(subject.identifier_encrypted, key=subject.key)
        if identifier is not None:
            yield event, identifier, event.subject.namespace


def subject_records(*, subject: Subject | None) -> dict[str, Any]:
    """One subject's records as a JSON-LD document (an empty graph for nobody)."""
    events = ConsentEvent.objects.filter(subject=subject) if subject is not None else None
    return {
        **_head(),
        "@graph": [
            record_node(e, identifier=i, namespace=n)
            for e, i, n in (_events(events) if events is not None else ())
        ],
    }


def _head() -> dict[str, Any]:
    return {
        "@context": CONTEXT,
        "dct:conformsTo": ISO_27560_SCHEMA,
        "dct:created": iso(timezone.now()),
    }


def records_stream(*, namespace: str | None = None) -> Iterator[str]:
    """Everyone's records (or one namespace's) as one JSON-LD document, a piece at a
    time, never the whole ledger in memory."""
    events = ConsentEvent.objects.all()
    if namespace is not None:
        events = events.filter(subject__namespace=namespace)
    yield json.dumps(_head(), ensure_ascii=False)[:-1] + ', "@graph": ['
    separator = "\n"
    for event, identifier, ns in _events(events):
        node = record_node(event, identifier=identifier, namespace=ns)
        yield separator + json.dumps(node, ensure_ascii=False)
        separator = ",\n"
    yield "\n]}\n"
