"""Writes behind the consent banner: properties and their keys, device ids, banner decisions,
Global Privacy Control refusals and the carrying over of a device's choices to an account.

The banner's feature folder (services, selectors, api) builds on consent.services and
writes through the ledger's one write path (consent.ledger.write).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from django.core import signing
from django.db import transaction
from django.utils import timezone

from consent.errors import InvalidDeviceId, PurposeNotShown
from consent.identity import subject_key
from consent.ledger.store import SubjectRef
from consent.ledger.write import ContextInput, Entry, Write, ledger_store, ledger_write
from consent.models import (
    BannerText,
    ConsentEvent,
    ConsentState,
    IndicationMethod,
    Property,
    Purpose,
    Source,
    Subject,
    SubjectLink,
)
from consent.notices import current_notice_versions
from consent.services import DecisionInput, consent_record
from governance import services as governance_services
from governance.actors import Actor
from governance.audit import audit_record
from governance.errors import InvalidRequest
from governance.models import ApiClient

DEVICE_ID_PREFIX = "dev_"
_DEVICE_SALT = "consent.device-id"
BANNER_TEXT_FIELDS = ("title", "description", "accept_all", "reject_all", "customise", "save")


# --- properties and their publishable keys ---------------------------------------------------


def origin_normalize(origin: str) -> str:
    """scheme://host[:port], lower-cased, as browsers send it in the Origin header."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidRequest(
            f"Not an origin: {origin!r}; use scheme://host[:port].", detail={"origin": origin}
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise InvalidRequest(
            f"An origin has no path, query or credentials: {origin!r}.", detail={"origin": origin}
        )
    return f"{parts.scheme}://{parts.netloc}".lower()


def origins_validate(origins: Iterable[str]) -> list[str]:
    return sorted({origin_normalize(o) for o in origins if o and o.strip()})


@transaction.atomic
def property_key_issue(*, prop: Property, actor: Actor) -> str:
    """Issues a publishable key for the property and returns it: the only time it is seen.

    The first call creates the property's publishable API client; later calls add a key to
    it (rotation: revoke the old key in the admin once sites use the new one).
    """
    locked = Property.objects.select_for_update().get(pk=prop.pk)
    if locked.api_client is None:
        client, key = governance_services.api_client_create(
            name=f"property:{locked.name}"[:120], kind=ApiClient.Kind.PUBLISHABLE
        )
        locked.api_client = client
        locked.save(update_fields=["api_client"])
    else:
        key = governance_services.api_key_issue(client=locked.api_client)
    prop.api_client = locked.api_client
    audit_record(
        actor=actor,
        action="property.key_issue",
        target_type="property",
        target_id=str(locked.pk),
        detail={"client_id": locked.api_client.pk if locked.api_client else None},
    )
    return key


@transaction.atomic
def property_create(
    *,
    name: str,
    allowed_origins: Sequence[str],
    purposes: Sequence[Purpose],
    actor: Actor,
    default_language: str = "en",
    texts: Mapping[str, Mapping[str, str]] | None = None,
    issue_key: bool = True,
) -> tuple[Property, str | None]:
    """Creates a property, its banner texts and (by default) its publishable key."""
    if Property.objects.filter(name=name).exists():
        raise InvalidRequest(f"A property named {name!r} already exists.")
    prop = Property.objects.create(
        name=name,
        allowed_origins=origins_validate(allowed_origins),
        default_language=default_language.lower(),
    )
    prop.purposes.set(purposes)
    for language, words in (texts or {}).items():
        unknown = sorted(set(words) - set(BANNER_TEXT_FIELDS))
        if unknown:
            raise InvalidRequest("Unknown banner text field.", detail={"unknown": unknown})
        fields = {("save_choices" if k == "save" else k): v for k, v in words.items()}
        BannerText.objects.create(property=prop, language=language.lower(), **fields)
    audit_record(
        actor=actor,
        action="property.create",
        target_type="property",
        target_id=str(prop.pk),
        detail={"name": name, "origins": prop.allowed_origins},
    )
    key = property_key_issue(prop=prop, actor=actor) if issue_key else None
    return prop, key


# --- device ids --------------------------------------------------------------------------------


def device_id_new() -> str:
    """An opaque, random device id, signed so that ids the service never issued are refused."""
    return signing.Signer(salt=_DEVICE_SALT).sign(DEVICE_ID_PREFIX + secrets.token_urlsafe(18))


def device_id_verify(value: str) -> str:
    if not isinstance(value, str) or not value.startswith(DEVICE_ID_PREFIX) or len(value) > 128:
        raise InvalidDeviceId()
    try:
        signing.Signer(salt=_DEVICE_SALT).unsign(value)
    except signing.BadSignature as exc:
        raise InvalidDeviceId() from exc
    return value


# --- linking a device to an account ------------------------------------------------------------


def subject_link(
    *,
    device_id: str,
    subject_id: str,
    actor: Actor,
    prop: Property | None = None,
    context: ContextInput | None = None,
    now: datetime | None = None,
) -> SubjectLink | None:
    """Carries a device's earlier choices over to an account subject, by appending events.

    For each purpose, the device's latest decision is appended to the account's chain when
    it is newer than the account's own (the latest decision wins); nothing is rewritten.
    Returns the recorded link, or None when the device has no choices or nothing is newer
    and the pair was linked before.
    """
    moment = now or timezone.now()
    with transaction.atomic():
        # The device first, then the account: every linking locks in this order.
        locked = ledger_store().subject_lock(
            SubjectRef(namespace=Subject.Namespace.DEVICE, key=subject_key(device_id)),
            states=False,
        )
        if locked is None:
            return None
        device, _ = locked
        carry: list[ConsentState] = []

        def plan(theirs: Mapping[int, ConsentState]) -> list[Entry]:
            carry.extend(
                s
                for s in ConsentState.objects.filter(subject=device, purpose__active=True)
                .select_related("purpose")
                .order_by("purpose__key")
                if s.purpose_id not in theirs or s.since > theirs[s.purpose_id].since
            )
            originals = ConsentEvent.objects.in_bulk([s.event_id for s in carry])
            return [
                Entry(
                    state.purpose,
                    state.status,
                    state.notice_version,
                    state.expires_at,
                    effective_at=state.since,
                    source=originals[state.event_id].source,
                    indication_method=originals[state.event_id].indication_method,
                    given_by=originals[state.event_id].given_by,
                    language=originals[state.event_id].language,
                )
                for state in carry
            ]

        carried = ledger_write(
            subject=SubjectRef.of(subject_id, Subject.Namespace.ACCOUNT),
            plan=plan,
            # Audited below, once for the whole link.
            write=Write(
                actor=actor,
                context=context or ContextInput(),
                audit_action=None,
                announce={"carried_from_device": True},
            ),
            now=moment,
        )
        account, receipt_id = carried.subject, carried.receipt_id
        assert account is not None  # an identifier creates the subject
        already = SubjectLink.objects.filter(device_subject=device, account_subject=account)
        if not carry and already.exists():
            return None
        link = SubjectLink.objects.create(
            device_subject=device,
            account_subject=account,
            property=prop,
            receipt_id=receipt_id,
            carried=[s.purpose.key for s in carry],
            created_at=moment,
        )
        audit_record(
            actor=actor,
            action="subject.link",
            target_type="subject",
            target_id=account.key,
            ip=(context.ip if context else ""),
            detail={
                "device_subject_key": device.key,
                "receipt_id": str(receipt_id) if receipt_id else None,
                "carried": link.carried,
            },
        )
        return link


# --- banner decisions and GPC ------------------------------------------------------------------


def gpc_purposes() -> list[Purpose]:
    """Every active purpose a GPC signal refuses that has a notice to refuse against."""
    candidates = list(Purpose.objects.filter(active=True, gpc_opt_out=True).order_by("key"))
    current = current_notice_versions([p.pk for p in candidates])
    return [p for p in candidates if p.pk in current]


@dataclass
class BannerRecordResult:
    device_id: str | None
    subject_namespace: str
    recorded_at: datetime
    receipt_ids: list[uuid.UUID] = field(default_factory=list)
    events: list[ConsentEvent] = field(default_factory=list)
    carried: list[str] = field(default_factory=list)


def banner_consent_record(
    *,
    prop: Property,
    decisions: Sequence[DecisionInput],
    actor: Actor,
    device_id: str | None = None,
    subject_id: str | None = None,
    indication_method: str = IndicationMethod.BUTTON,
    gpc: bool = False,
    context: ContextInput | None = None,
    now: datetime | None = None,
) -> BannerRecordResult:
    """Records a banner choice for the token's subject, else the device (issued if new).

    With `gpc`, every GPC opt-out purpose is refused with source gpc, after and instead of
    whatever the same request said about it. With both a subject and a device, the device's
    earlier choices are carried over first. All or nothing.
    """
    shown = set(prop.purposes.filter(active=True).values_list("key", flat=True))
    not_shown = sorted({d.purpose for d in decisions} - shown)
    if not_shown:
        raise PurposeNotShown(
            f"The property does not show: {', '.join(not_shown)}.",
            detail={"purposes": not_shown},
        )
    if not decisions and not gpc:
        raise InvalidRequest("decisions must not be empty.", detail={"field": "decisions"})
    if indication_method not in (IndicationMethod.BUTTON, IndicationMethod.CHECKBOX):
        raise InvalidRequest("A banner indicates choices with a button or a checkbox.")
    moment = now or timezone.now()
    if subject_id is None and device_id is None:
        device_id = device_id_new()
    refused_by_gpc = [p.key for p in gpc_purposes()] if gpc else []
    own = [d for d in decisions if d.purpose not in refused_by_gpc]
    result = BannerRecordResult(
        device_id=device_id,
        subject_namespace=(
            Subject.Namespace.ACCOUNT if subject_id is not None else Subject.Namespace.DEVICE
        ),
        recorded_at=moment,
    )
    identifier = subject_id if subject_id is not None else device_id
    assert identifier is not None
    with transaction.atomic():
        if subject_id is not None and device_id is not None:
            link = subject_link(
                device_id=device_id,
                subject_id=subject_id,
                actor=actor,
                prop=prop,
                context=context,
                now=moment,
            )
            if link is not None:
                result.carried = list(link.carried)
        refusals = [DecisionInput(purpose=key, granted=False) for key in refused_by_gpc]
        namespace = result.subject_namespace
        # (whose identifier and namespace, the decisions, source, indication, whether the
        # answer reports them)
        writes = [
            (identifier, namespace, own, Source.BANNER, indication_method, True),
            (identifier, namespace, refusals, Source.GPC, IndicationMethod.GPC, True),
        ]
        if subject_id is not None and device_id is not None:
            # GPC is recorded against the device as well as the account it belongs to.
            device = Subject.Namespace.DEVICE
            writes.append((device_id, device, refusals, Source.GPC, IndicationMethod.GPC, False))
        for whose, whose_namespace, chosen, source, method, reported in writes:
            if not chosen:
                continue
            recorded = consent_record(
                subject_id=whose,
                decisions=chosen,
                actor=actor,
                source=source,
                indication_method=method,
                context=context,
                namespace=whose_namespace,
                now=moment,
            )
            if not reported:
                continue
            if recorded.receipt_id is not None:
                result.receipt_ids.append(recorded.receipt_id)
            result.events.extend(recorded.events)
    return result
