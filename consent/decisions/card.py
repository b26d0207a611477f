"""The dataset consent card: the consent provenance of a training set (one decision), signed
like receipts (its own JWS typ), and the same facts as JSON-LD (W3C DPV and Croissant RAI
terms, docs/consent-bias.md says which) or as a Markdown section for a model or dataset card.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Max, Q
from django.utils import timezone

from consent.errors import DecisionNotComplete
from consent.models import Decision, LegalBasis, NoticeVersion
from governance.api.common import iso
from governance.signing import TYP_DATASET_CARD, jws_sign, jws_verify
from governance.suppression import counts_published

CARD_VERSION = 1
CONTEXT_FILE = Path(__file__).resolve().parent / "contexts" / "dataset-card-v1.jsonld"
CONTEXT_PATH = "/contexts/dataset-card-v1.jsonld"
CARD_NAMESPACE = "urn:consent-governance:card:"

# Our legal bases as W3C DPV concepts.
DPV_LEGAL_BASIS = {
    LegalBasis.CONSENT: "dpv:Consent",
    LegalBasis.CONTRACT: "dpv:Contract",
    LegalBasis.LEGAL_OBLIGATION: "dpv:LegalObligation",
    LegalBasis.VITAL_INTEREST: "dpv:VitalInterest",
    LegalBasis.PUBLIC_TASK: "dpv:PublicInterest",
    LegalBasis.LEGITIMATE_INTEREST: "dpv:LegitimateInterest",
}


def _notices_in_force(decision: Decision) -> list[dict[str, Any]]:
    """The purpose's notice versions whose consents count at the decision's instant: from
    the latest material version (or the first) to the current one."""
    published = NoticeVersion.objects.filter(
        purpose_id=decision.purpose_id, published_at__lte=decision.as_of
    )
    material = published.aggregate(v=Max("version", filter=Q(material=True)))["v"] or 0
    return [
        {
            "version": n.version,
            "published_at": iso(n.published_at),
            "material": n.material,
            "text_sha256": n.text_hash,
        }
        for n in published.filter(version__gte=material).order_by("version")
    ]


def card_fields(decision: Decision, *, now: datetime | None = None) -> dict[str, Any]:
    """Every field the card signs (all but `jws`)."""
    if decision.status != Decision.Status.COMPLETE:
        raise DecisionNotComplete(detail={"decision_id": str(decision.id)})
    purpose, data_use, snapshot = decision.purpose, decision.data_use, decision.snapshot
    return {
        "card_version": CARD_VERSION,
        "decision_id": str(decision.id),
        "issued_at": iso(now or timezone.now()),
        "controller": settings.CONTROLLER["name"],
        "purpose": {
            "key": purpose.key,
            "name": purpose.name,
            "legal_basis": purpose.legal_basis,
            "dpv_purpose": purpose.dpv_concept or None,
        },
        "data_use": (
            {"key": data_use.key, "name": data_use.name, "owner": data_use.owner}
            if data_use
            else None
        ),
        "model": decision.model or None,
        "mode": decision.mode,
        "as_of": iso(decision.as_of),
        "counts": {
            "candidates": decision.total,
            "allowed": decision.allowed_count,
            "denied": decision.denied_count,
            "reasons": counts_published(decision.reasons),
        },
        "skew": decision.skew,
        "snapshot": (
            {"id": str(snapshot.id), "file_sha256": snapshot.file_sha256 or None}
            if snapshot
            else None
        ),
        "id_set_digest": decision.id_set_digest,
        "notice_versions": _notices_in_force(decision),
    }


def card_signed(decision: Decision, *, now: datetime | None = None) -> dict[str, Any]:
    """The card and, in `jws`, a compact JWS (typ dataset-card+jws) over every other field."""
    fields = card_fields(decision, now=now)
    return {**fields, "jws": jws_sign(fields, typ=TYP_DATASET_CARD)}


def card_verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """The card signed in `token`; raises governance.signing.JwsInvalid for anything else."""
    return jws_verify(token, jwks, typ=TYP_DATASET_CARD)


# --- JSON-LD -------------------------------------------------------------------------------


def _skew_summary(skew: dict[str, Any] | None) -> str:
    if not skew:
        return "No attributes were given with this decision, so no skew was measured."
    flagged = [
        f"{name}={row['value']} (representation {row['representation']:.2f})"
        if row["representation"] is not None
        else f"{name}={'(suppressed)' if row['suppressed'] else row['value']}"
        for name, rows in sorted(skew["by"].items())
        for row in rows
        if row["flag"]
    ]
    if not flagged:
        return "Every group's representation after the consent filter is within [0.8, 1.25]."
    return (
        "Groups whose representation after the consent filter is outside [0.8, 1.25]: "
        + "; ".join(flagged)
        + ". Rows that carry a weight restore the candidates' distribution."
    )


def card_jsonld(card: dict[str, Any], *, context_url: str) -> dict[str, Any]:
    """The card's facts as a JSON-LD schema.org/Croissant Dataset with DPV and RAI terms."""
    purpose = card["purpose"]
    counts = card["counts"]
    data_use = card["data_use"]
    purpose_node: dict[str, Any] = {
        "@id": purpose["dpv_purpose"] or f"{CARD_NAMESPACE}purpose:{purpose['key']}",
        "name": purpose["name"],
        "identifier": purpose["key"],
    }
    use = f" for data use {data_use['key']} ({data_use['name']})" if data_use else ""
    doc: dict[str, Any] = {
        "@context": context_url,
        "@id": f"urn:uuid:{card['decision_id']}",
        "@type": "Dataset",
        "name": f"Consent provenance of decision {card['decision_id']}",
        "decision": card["decision_id"],
        "issued": card["issued_at"],
        "asOf": card["as_of"],
        "hasDataController": {"@type": "Organization", "name": card["controller"]},
        "hasPurpose": purpose_node["@id"],
        "hasLegalBasis": DPV_LEGAL_BASIS.get(purpose["legal_basis"], purpose["legal_basis"]),
        "dataUseCases": f"{purpose['name']} ({purpose['key']}){use}",
        "dataCollection": (
            f"{counts['candidates']} candidates were checked against their consent for "
            f"{purpose['key']} as of {card['as_of']}: {counts['allowed']} allowed, "
            f"{counts['denied']} denied."
        ),
        "dataPreprocessingProtocol": (
            "Filtered by the consent service's decision rule: only people allowed for the "
            "purpose at the stated instant were kept (decision "
            f"{card['decision_id']}, mode {card['mode']})."
        ),
        "dataBiases": _skew_summary(card["skew"]),
        "hasNotice": [
            {
                "@type": "dpv:Notice",
                "noticeVersion": n["version"],
                "datePublished": n["published_at"],
                "material": n["material"],
                "textSha256": n["text_sha256"],
            }
            for n in card["notice_versions"]
        ],
        "consentCounts": counts,
        "idSetDigest": card["id_set_digest"],
        "jws": card["jws"],
    }
    if data_use:
        doc["dataUse"] = {"identifier": data_use["key"], "name": data_use["name"]}
        if data_use["owner"]:
            doc["dataUse"]["maintainer"] = data_use["owner"]
    if card["model"]:
        doc["description"] = f"Training data of model {card['model']}."
    if card["skew"]:
        doc["personalSensitiveInformation"] = sorted(card["skew"]["by"])
        doc["skew"] = card["skew"]
    if card["snapshot"]:
        doc["snapshotFileSha256"] = card["snapshot"]["file_sha256"]
    return doc


def card_context() -> bytes:
    return CONTEXT_FILE.read_bytes()


# --- Markdown ------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    """A table cell: pipes, line ends and HTML left inert."""
    text = "—" if value is None else str(value)
    for raw, safe in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|")):
        text = text.replace(raw, safe)
    return " ".join(text.split())


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def card_markdown(card: dict[str, Any]) -> str:
    """A Markdown section to paste into a model or dataset card."""
    purpose, counts, data_use = card["purpose"], card["counts"], card["data_use"]
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(counts["reasons"].items())) or "none"
    notices = ", ".join(
        f"v{n['version']} ({n['published_at'][:10]}{', material' if n['material'] else ''})"
        for n in card["notice_versions"]
    )
    provenance = (
        f"snapshot file SHA-256 `{card['snapshot']['file_sha256']}`"
        if card["snapshot"] and card["snapshot"]["file_sha256"]
        else f"id-set digest `{card['id_set_digest']}`"
    )
    rows = [
        ("Decision", f"`{card['decision_id']}` ({card['mode']})"),
        ("Controller", card["controller"]),
        (
            "Purpose",
            f"{purpose['name']} (`{purpose['key']}`), legal basis {purpose['legal_basis']}",
        ),
        (
            "Data use",
            f"{data_use['name']} (`{data_use['key']}`), owner {data_use['owner'] or '—'}"
            if data_use
            else "—",
        ),
        ("Model", card["model"]),
        ("Consent as of", card["as_of"]),
        ("Candidates", counts["candidates"]),
        ("Allowed / denied", f"{counts['allowed']} / {counts['denied']}"),
        ("Denied because", reasons),
        ("Notice versions in force", notices or "—"),
        ("Provenance", provenance),
        ("Card issued", card["issued_at"]),
    ]
    lines = [
        "## Consent provenance",
        "",
        "| | |",
        "|---|---|",
        *(f"| {label} | {_cell(value)} |" for label, value in rows),
        "",
        "Signed by the consent service: the card's `jws` (typ `dataset-card+jws`) verifies "
        "against its JWKS at `/.well-known/jwks.json`.",
    ]
    skew = card["skew"]
    if skew:
        lines += [
            "",
            "### Who the consent filter leaves out",
            "",
            f"Overall allowed rate: {_number(skew['allowed_rate'])}. Representation = share "
            "of the allowed / share of the candidates; flagged outside [0.8, 1.25]; the "
            "weight restores the candidates' distribution. Groups under 10 candidates are "
            'merged into one suppressed row; counts under 10 read "<10".',
        ]
        for name, attribute_rows in sorted(skew["by"].items()):
            lines += [
                "",
                f"**{_cell(name)}**",
                "",
                "| value | candidates | allowed | allowed rate | representation | weight | flag |",
                "|---|---|---|---|---|---|---|",
            ]
            for row in attribute_rows:
                value = "(suppressed)" if row["suppressed"] else row["value"]
                value = "(not given)" if value is None else value
                flag = {True: "**yes**", False: "no", None: "—"}[row["flag"]]
                lines.append(
                    f"| {_cell(value)} | {_cell(row['candidates'])} | {_cell(row['allowed'])} "
                    f"| {_number(row['allowed_rate'])} | {_number(row['representation'])} "
                    f"| {_number(row['weight'])} | {flag} |"
                )
    return "\n".join(lines) + "\n"
