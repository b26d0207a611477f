"""The consent-rates report: per bucket (day, week, property, jurisdiction, source), how many
events granted, refused and withdrew a purpose, how many came from GPC, the grant rate and,
for day, week and property, how often a banner asked. Counted in SQL; small counts
suppressed (governance.suppression) before anything leaves this module.

The consent-skew report of the service's own population: the people asked about a purpose,
as of an instant, by their standing event's context (jurisdiction, locale, property, source,
notice version), in the terms of consent.skew.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, F, OuterRef, Q, Subquery, Sum
from django.db.models.functions import TruncDate, TruncWeek

from consent.checks.facts import ACCOUNT
from consent.checks.gather import facts_for
from consent.models import (
    Action,
    ActorType,
    BannerShown,
    ConsentContext,
    ConsentEvent,
    ConsentState,
    IndicationMethod,
    LegalBasis,
    Property,
    Purpose,
    Subject,
)
from consent.notices import notice_versions
from consent.skew import Cell, skew_report
from governance.suppression import Rate, suppress_small

GROUPINGS = ("day", "week", "property", "jurisdiction", "source")
# Groupings whose buckets the banner's `shown` counter (per property and day) can fill.
SHOWN_GROUPINGS = ("day", "week", "property")
DEFAULT_DAYS = 30
COUNTS = ("granted", "refused", "withdrawn", "gpc", "shown")
# The events a bucket holds, for the small-bucket rule (gpc events are refusals already).
EVENTS = ("granted", "refused", "withdrawn")
GRANT_RATE = Rate("grant_rate", numerator=("granted",), denominator=("granted", "refused"))
UNKNOWN_JURISDICTION = "unknown"


@dataclass(frozen=True)
class Window:
    """Whole UTC days, both ends included."""

    start: date
    end: date

    @classmethod
    def last_days(cls, *, end: date | None = None, days: int = DEFAULT_DAYS) -> Window:
        last = end or datetime.now(UTC).date()
        return cls(start=last - timedelta(days=days - 1), end=last)

    @property
    def bounds(self) -> tuple[datetime, datetime]:
        return (
            datetime.combine(self.start, time.min, tzinfo=UTC),
            datetime.combine(self.end, time.max, tzinfo=UTC),
        )


def _as_date(value: Any) -> Any:
    return value.date() if isinstance(value, datetime) else value


def _event_buckets(*, purpose: Purpose, window: Window, by: str) -> dict[Hashable, dict[str, int]]:
    low, high = window.bounds
    events = ConsentEvent.objects.filter(
        purpose=purpose,
        effective_at__gte=low,
        effective_at__lte=high,
        action__in=[Action.GRANTED, Action.REFUSED, Action.WITHDRAWN],
    )
    if by == "day":
        bucket: Any = TruncDate("effective_at", tzinfo=UTC)
    elif by == "week":
        bucket = TruncWeek("effective_at", tzinfo=UTC)
    elif by == "property":
        # A property's events are those recorded through its publishable key.
        names = dict(
            Property.objects.filter(api_client__isnull=False).values_list("api_client_id", "name")
        )
        events = events.filter(
            actor_type=ActorType.API_CLIENT, actor_id__in=[str(pk) for pk in names]
        )
        bucket = F("actor_id")
    elif by == "jurisdiction":
        bucket = Subquery(
            ConsentContext.objects.filter(receipt_id=OuterRef("receipt_id")).values("jurisdiction")[
                :1
            ]
        )
    else:
        bucket = F(by)
    rows = (
        events.order_by()  # the model's ordering would join the GROUP BY
        .annotate(bucket=bucket)
        .values("bucket")
        .annotate(
            granted=Count("pk", filter=Q(action=Action.GRANTED)),
            refused=Count("pk", filter=Q(action=Action.REFUSED)),
            withdrawn=Count("pk", filter=Q(action=Action.WITHDRAWN)),
            gpc=Count("pk", filter=Q(indication_method=IndicationMethod.GPC)),
        )
    )
    found: dict[Hashable, dict[str, int]] = {}
    for row in rows:
        key = _as_date(row.pop("bucket"))
        if by == "property":
            key = names[int(key)]
        elif by == "jurisdiction":
            key = key or UNKNOWN_JURISDICTION
        found[key] = row
    return found


def _shown_buckets(*, purpose: Purpose, window: Window, by: str) -> dict[Hashable, int]:
    """Banner answers that asked, on the properties that show the purpose."""
    bucket: Any = {
        "day": F("day"),
        "week": TruncWeek("day"),
        "property": F("property__name"),
    }[by]
    rows = (
        BannerShown.objects.filter(
            day__gte=window.start, day__lte=window.end, property__purposes=purpose
        )
        .order_by()
        .annotate(bucket=bucket)
        .values("bucket")
        .annotate(shown=Sum("count"))
    )
    return {_as_date(row["bucket"]): row["shown"] for row in rows}


def consent_rates(*, purpose: Purpose, window: Window, by: str) -> list[dict[str, Any]]:
    """The report's buckets, in order, small ones merged into one suppressed bucket last."""
    events = _event_buckets(purpose=purpose, window=window, by=by)
    shown = _shown_buckets(purpose=purpose, window=window, by=by) if by in SHOWN_GROUPINGS else {}
    empty = dict.fromkeys((*EVENTS, "gpc"), 0)
    rows = [
        {
            "bucket": key.isoformat() if isinstance(key, date) else key,
            **events.get(key, empty),
            "shown": shown.get(key, 0) if by in SHOWN_GROUPINGS else None,
        }
        for key in sorted(events.keys() | shown.keys(), key=str)
    ]
    return suppress_small(rows, key="bucket", counts=COUNTS, size=EVENTS, rates=[GRANT_RATE])


GPC_SHARE = Rate("gpc_share", numerator=("gpc",), denominator=("events",))


def gpc_share(*, window: Window) -> list[dict[str, Any]]:
    """Per purpose with events in the window: its events, those from GPC and their share;
    suppressed like the report (purposes with fewer than 10 events are merged)."""
    low, high = window.bounds
    rows = (
        ConsentEvent.objects.filter(
            effective_at__gte=low,
            effective_at__lte=high,
            action__in=[Action.GRANTED, Action.REFUSED, Action.WITHDRAWN],
        )
        .order_by()
        .values(bucket=F("purpose__key"))
        .annotate(
            events=Count("pk"),
            gpc=Count("pk", filter=Q(indication_method=IndicationMethod.GPC)),
        )
        .order_by("bucket")
    )
    return suppress_small(
        rows, key="bucket", counts=("events", "gpc"), size=("events",), rates=[GPC_SHARE]
    )


def reconsent_awaiting(*, now: datetime | None = None) -> dict[str, int]:
    """Per consent-based purpose: people whose grant was given to a notice version older
    than the latest material one, so the banner asks them again (reason notice_changed)."""
    purposes = dict(Purpose.objects.filter(legal_basis=LegalBasis.CONSENT).values_list("pk", "key"))
    stale = Q(pk__in=[])
    for pk, (_, material) in notice_versions(purposes, now=now).items():
        if material:
            stale |= Q(purpose_id=pk, notice_version__lt=material)
    rows = (
        ConsentState.objects.filter(stale, status=Action.GRANTED)
        .order_by()
        .values("purpose_id")
        .annotate(people=Count("subject_id"))
    )
    return {purposes[row["purpose_id"]]: row["people"] for row in rows}


# --- consent skew of the service's own population ------------------------------------------

SKEW_GROUPINGS = ("jurisdiction", "locale", "property", "source", "notice_version")
SKEW_CHUNK = 10_000


def _standing_context(event_ids: list[str]) -> dict[str, dict[str, str | None]]:
    """Each standing event's context fields, by event id (null where not known)."""
    events = list(
        ConsentEvent.objects.filter(id__in=event_ids).values(
            "id", "source", "notice_version", "actor_type", "actor_id", "receipt_id"
        )
    )
    contexts: dict[Any, dict[str, Any]] = {
        row["receipt_id"]: dict(row)
        for row in ConsentContext.objects.filter(
            receipt_id__in={e["receipt_id"] for e in events}
        ).values("receipt_id", "jurisdiction", "locale")
    }
    names = dict(
        Property.objects.filter(api_client__isnull=False).values_list("api_client_id", "name")
    )
    found: dict[str, dict[str, str | None]] = {}
    for event in events:
        context = contexts.get(event["receipt_id"], {})
        by_key = event["actor_type"] == ActorType.API_CLIENT and event["actor_id"].isdigit()
        found[str(event["id"])] = {
            "jurisdiction": context.get("jurisdiction") or None,
            "locale": context.get("locale") or None,
            "property": names.get(int(event["actor_id"])) if by_key else None,
            "source": event["source"],
            "notice_version": str(event["notice_version"]),
        }
    return found


def consent_skew(*, purpose: Purpose, at: datetime, by: list[str]) -> dict[str, Any]:
    """The skew report of the account-namespace people with an event for `purpose` at or
    before `at`: candidates are those people, allowed those the decision rule allows at
    `at`, attributes their standing event's context. Read a chunk of people at a time, the
    people streamed from the database (a server-side cursor on PostgreSQL), so memory holds
    one chunk whatever the population."""
    facts = facts_for(connection)
    rule = facts.purpose_rule_of(purpose.pk)
    people = (
        ConsentEvent.objects.filter(
            purpose=purpose, effective_at__lte=at, subject__namespace=ACCOUNT
        )
        .order_by("subject_id")
        .values_list("subject_id", flat=True)
        .distinct()
    )
    stream = people.iterator(chunk_size=SKEW_CHUNK)
    cells: dict[str, dict[str | None, Cell]] = {name: {} for name in by}
    candidates = allowed = 0
    while chunk := list(islice(stream, SKEW_CHUNK)):
        keys = list(Subject.objects.filter(pk__in=chunk).values_list("key", flat=True))
        with transaction.atomic():
            answers = facts.standings(keys, rule, at=at, as_of=True)
        contexts = _standing_context([str(v.event_id) for v in answers.verdicts if v.event_id])
        for verdict in answers.verdicts:
            candidates += 1
            allowed += verdict.allowed
            context: dict[str, str | None] = contexts.get(str(verdict.event_id), {})
            for name in by:
                cell = cells[name].setdefault(context.get(name), Cell())
                cell.candidates += 1
                if verdict.allowed:
                    cell.allowed += 1
                else:
                    cell.reasons[verdict.reason] = cell.reasons.get(verdict.reason, 0) + 1
    return skew_report(candidates=candidates, allowed=allowed, cells=cells)
