"""The current notice version of a purpose, in one place: the latest version published at or
before an instant, and the latest material one beside it. Reads only; the writes that publish
versions are consent.services.notice_version_publish and purpose_create.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import IntegerField, Max, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from consent.models import NoticeVersion

# The same fact in SQL, for raw statements over `consent_purpose {alias}` (the write path's
# purpose read): one parameter, the instant.
CURRENT_NOTICE_SQL = (
    "(SELECT MAX(n.version) FROM consent_noticeversion n"
    " WHERE n.purpose_id = {alias}.id AND n.published_at <= %s)"
)
# The latest material version published at or before the instant (NULL when none).
MATERIAL_NOTICE_SQL = (
    "(SELECT MAX(n.version) FROM consent_noticeversion n"
    " WHERE n.purpose_id = {alias}.id AND n.material AND n.published_at <= %s)"
)
_MATERIAL = Q(material=True)

# When the next version of the purpose is published (NULL when none is scheduled).
NEXT_NOTICE_AT_SQL = (
    "(SELECT MIN(n.published_at) FROM consent_noticeversion n"
    " WHERE n.purpose_id = {alias}.id AND n.published_at > %s)"
)


def notice_versions(
    purpose_ids: Iterable[int], *, now: datetime | None = None
) -> dict[int, tuple[int, int]]:
    """Per purpose with a published notice: (current version, latest material version or 0)
    as of `now` (default: now). Purposes without a published version are absent."""
    moment = now or timezone.now()
    rows = (
        NoticeVersion.objects.filter(purpose_id__in=list(purpose_ids), published_at__lte=moment)
        .values("purpose_id")
        .annotate(current=Max("version"), material=Max("version", filter=_MATERIAL))
        .values_list("purpose_id", "current", "material")
    )
    return {purpose_id: (current, material or 0) for purpose_id, current, material in rows}


def current_notice_versions(
    purpose_ids: Iterable[int], *, now: datetime | None = None
) -> dict[int, int]:
    """Per purpose with a published notice: its current version as of `now` (default: now)."""
    return {pk: current for pk, (current, _) in notice_versions(purpose_ids, now=now).items()}


def with_notice_versions(
    rows: QuerySet[Any], *, purpose: str = "purpose_id", now: datetime | None = None
) -> QuerySet[Any]:
    """`rows` (of a model naming a purpose in the field `purpose`) annotated, in the same
    query, with `current_notice` (None when none is published) and `material_notice` (0
    when none) as of `now` (default: now)."""
    published = NoticeVersion.objects.filter(
        purpose_id=OuterRef(purpose), published_at__lte=now or timezone.now()
    ).order_by("-version")
    latest = published.values("version")[:1]
    material = published.filter(material=True).values("version")[:1]
    return rows.annotate(
        current_notice=Subquery(latest, output_field=IntegerField()),
        material_notice=Coalesce(Subquery(material, output_field=IntegerField()), Value(0)),
    )
