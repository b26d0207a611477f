"""Reads behind the consent banner: the property of a key, its configuration in a language,
and whether a person must be asked again."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf.locale import LANG_INFO
from django.db.models import Min
from django.utils import timezone

from consent.errors import OriginNotAllowed, UnknownLanguage, UnknownProperty
from consent.ledger.states import effective_status
from consent.models import (
    Action,
    BannerText,
    ConsentState,
    LegalBasis,
    NoticeText,
    NoticeVersion,
    Property,
    Purpose,
    Source,
    Subject,
)
from consent.notices import notice_versions
from governance.memo import Memo, memos_version

_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,3}$")
_KNOWN_LANGUAGES = {code.split("-")[0] for code in LANG_INFO}


class Reason:
    NEVER_ASKED = "never_asked"
    NOTICE_CHANGED = "notice_changed"
    EXPIRED = "expired"


# Every banner request reads its property and the property's texts: both are memoised for
# a second (governance.memo), cleared in-process when a property, its purposes, a notice or a
# text changes (consent/apps.py), never past a notice version's publication. Read-only.
_PROPERTIES = Memo()
_TEXTS = Memo()


def property_for_client(client: Any) -> Property:
    """The active property of a publishable key's client, its purposes prefetched."""
    now, version = time.time(), memos_version()
    prop: Property | None = _PROPERTIES.get(client.pk, at=now)
    if prop is None:
        prop = (
            Property.objects.filter(api_client=client, active=True)
            .prefetch_related("purposes")
            .first()
        )
        if prop is None:
            raise UnknownProperty()
        _PROPERTIES.put(client.pk, prop, version=version, at=now)
    return prop


_ORIGINS = Memo()


def origin_allowed_anywhere(origin: str) -> bool:
    """Whether any active property lists the origin (CORS preflights carry no key). Every
    banner request asks, so the origins are memoised for a second (governance.memo): the
    view still refuses an origin that is not its own property's."""
    now, version = time.time(), memos_version()
    origins: frozenset[str] | None = _ORIGINS.get("active", at=now)
    if origins is None:
        listed = Property.objects.filter(active=True).values_list("allowed_origins", flat=True)
        origins = frozenset(origin for origins in listed for origin in origins)
        _ORIGINS.put("active", origins, version=version, at=now)
    return origin.strip().lower().rstrip("/") in origins


def origin_check(*, prop: Property, origin: str | None) -> None:
    if not origin or origin.strip().lower().rstrip("/") not in prop.allowed_origins:
        raise OriginNotAllowed(detail={"origin": origin or None})


def language_resolve(*, prop: Property, requested: str | None) -> str:
    """The primary language subtag asked for; unknown or malformed codes are refused."""
    if not requested:
        return prop.default_language
    if not _LANGUAGE_TAG.match(requested):
        raise UnknownLanguage(detail={"lang": requested[:32]})
    primary = requested.replace("_", "-").split("-")[0].lower()
    if primary not in _KNOWN_LANGUAGES:
        raise UnknownLanguage(detail={"lang": requested})
    return primary


@dataclass(frozen=True)
class PurposeView:
    purpose: Purpose
    notice_version: int
    material_version: int
    title: str
    body: str
    language: str


def _texts_for(
    *, prop: Property, language: str, purposes: list[Purpose], now: datetime
) -> list[PurposeView]:
    versions = notice_versions([p.pk for p in purposes], now=now)
    current = {pk: version for pk, (version, _) in versions.items()}
    texts: dict[int, dict[str, NoticeText]] = {}
    for text in NoticeText.objects.filter(
        notice_version__purpose__in=purposes, notice_version__published_at__lte=now
    ).select_related("notice_version"):
        nv = text.notice_version
        if current.get(nv.purpose_id) == nv.version:
            texts.setdefault(nv.purpose_id, {})[text.language.lower()] = text
    views = []
    for purpose in purposes:
        if purpose.pk not in current:
            continue  # no published notice yet: nothing to ask about
        by_language = texts.get(purpose.pk, {})
        fallback = by_language[min(by_language)] if by_language else None
        chosen: NoticeText | None = (
            by_language.get(language) or by_language.get(prop.default_language) or fallback
        )
        views.append(
            PurposeView(
                purpose=purpose,
                notice_version=current[purpose.pk],
                material_version=versions[purpose.pk][1],
                title=chosen.title if chosen else purpose.name,
                body=chosen.body if chosen else purpose.description,
                language=chosen.language if chosen else "",
            )
        )
    return views


def banner_texts(*, prop: Property, language: str) -> tuple[dict[str, str], str]:
    by_language = {t.language.lower(): t for t in BannerText.objects.filter(property=prop)}
    chosen_language = language if language in by_language else prop.default_language
    text = by_language.get(chosen_language) or BannerText(property=prop, language=chosen_language)
    return (
        {
            "title": text.title,
            "description": text.description,
            "accept_all": text.accept_all,
            "reject_all": text.reject_all,
            "customise": text.customise,
            "save": text.save_choices,
        },
        chosen_language,
    )


_Texts = tuple[list[PurposeView], dict[str, str], str]


def _property_texts(*, prop: Property, language: str, now: datetime | None) -> _Texts:
    """The property's purposes with their notices in `language`, and its banner texts (the
    language they are in); memoised when asked for the present (`now` None)."""
    moment = now or timezone.now()
    at, version = moment.timestamp(), memos_version()
    found: _Texts | None = _TEXTS.get((prop.pk, language), at=at) if now is None else None
    if found is None:
        # The property's purposes as property_for_client prefetched them.
        purposes = sorted((p for p in prop.purposes.all() if p.active), key=lambda p: p.key)
        views = _texts_for(prop=prop, language=language, purposes=purposes, now=moment)
        found = (views, *banner_texts(prop=prop, language=language))
        if now is None:
            upcoming = NoticeVersion.objects.filter(
                purpose__in=purposes, published_at__gt=moment
            ).aggregate(at=Min("published_at"))["at"]
            until = upcoming.timestamp() if upcoming is not None else None
            _TEXTS.put((prop.pk, language), found, version=version, at=at, until=until)
    return found


def banner_config(
    *,
    prop: Property,
    language: str,
    subject: Subject | None,
    gpc: bool,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The property's purposes in a language and, for this person, whether to ask again.

    A consent-based purpose is asked about when it was never decided, when a material notice
    version was published after the one decided on, or when a grant has expired.
    """
    moment = now or timezone.now()
    views, texts, texts_language = _property_texts(prop=prop, language=language, now=now)
    states: dict[int, ConsentState] = (
        {s.purpose_id: s for s in ConsentState.objects.filter(subject=subject)} if subject else {}
    )
    rows, reasons = [], []
    gpc_pending = False
    for view in views:
        purpose = view.purpose
        state = states.get(purpose.pk)
        status = effective_status(state, moment) if state else None
        if purpose.gpc_opt_out and gpc and not (state and state.gpc):
            gpc_pending = True
        if purpose.legal_basis == LegalBasis.CONSENT:
            reason = None
            if state is None:
                reason = Reason.NEVER_ASKED
            elif view.material_version > state.notice_version:
                reason = Reason.NOTICE_CHANGED
            elif status == Action.EXPIRED:
                reason = Reason.EXPIRED
            if reason:
                reasons.append({"purpose": purpose.key, "reason": reason})
        rows.append(
            {
                "key": purpose.key,
                "name": purpose.name,
                "legal_basis": purpose.legal_basis,
                "gpc_opt_out": purpose.gpc_opt_out,
                "notice_version": view.notice_version,
                "title": view.title,
                "description": view.body,
                "language": view.language,
                "status": status,
                "status_source": Source.GPC if state is not None and state.gpc else None,
            }
        )
    return {
        "property": prop.name,
        "language": texts_language,
        "texts": texts,
        "purposes": rows,
        "ask": bool(reasons),
        "reasons": reasons,
        "gpc": gpc,
        "gpc_pending": gpc_pending,
    }
