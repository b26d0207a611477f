"""GET /api/v1/reports/consent-rates: buckets per grouping, the small-count rule, `shown`."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.core.cache import cache

from consent import services
from consent.banner import services as banner_services
from consent.ledger.write import ContextInput
from consent.models import BannerShown, IndicationMethod, Property, Source
from consent.reports.services import LocalShownCounter, banner_shown_flush, shown_counter
from consent.tasks import banner_shown_flush_task
from governance.actors import Actor
from tests.conftest import Api, assert_error

pytestmark = pytest.mark.django_db

URL = "/api/v1/reports/consent-rates"
ORIGIN = "https://shop.example"
TODAY = datetime.now(UTC).date()
_people = itertools.count(1)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    cache.clear()  # the `shown` hashes and the banner's rate limits live there


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def record(
    n: int,
    *,
    granted: bool,
    when: datetime,
    purpose: str = "analytics",
    actor: Actor | None = None,
    source: str = Source.API,
    method: str = IndicationMethod.API,
    jurisdiction: str = "",
) -> None:
    """n people, each with one event: granted or refused."""
    for _ in range(n):
        services.consent_record(
            subject_id=f"person-{next(_people)}",
            decisions=[services.DecisionInput(purpose=purpose, granted=granted)],
            actor=actor or Actor.system("test"),
            source=source,
            indication_method=method,
            context=ContextInput(jurisdiction=jurisdiction) if jurisdiction else None,
            now=when,
        )


def withdraw(n: int, *, when: datetime, purpose: str = "analytics") -> None:
    """n people who granted and then withdrew (two events each)."""
    for _ in range(n):
        person = f"person-{next(_people)}"
        for granted, moment in ((True, when - timedelta(minutes=5)), (False, when)):
            services.consent_record(
                subject_id=person,
                decisions=[services.DecisionInput(purpose=purpose, granted=granted)],
                actor=Actor.system("test"),
                now=moment,
            )


def report(api: Api, **params: Any) -> list[dict[str, Any]]:
    response = api.get(URL, **{"purpose": "analytics", **params})
    assert response.status_code == 200, response.content
    return response.json()["buckets"]


def by_bucket(buckets: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {b["bucket"]: b for b in buckets}


def make_property(purposes: dict[str, Any], name: str = "shop") -> tuple[Property, str]:
    prop, key = banner_services.property_create(
        name=name,
        allowed_origins=[ORIGIN],
        purposes=[purposes["analytics"], purposes["targeted_ads"]],
        actor=Actor.system("test"),
    )
    assert key is not None
    return prop, key


# --- buckets per grouping -----------------------------------------------------------------


def test_by_day_counts_each_action_and_the_grant_rate(api: Api) -> None:
    day = TODAY - timedelta(days=3)
    record(15, granted=True, when=at(day))
    record(10, granted=False, when=at(day))
    withdraw(10, when=at(day))  # 10 grants and 10 withdrawals
    b = by_bucket(report(api, by="day"))[day.isoformat()]
    assert (b["granted"], b["refused"], b["withdrawn"]) == (25, 10, 10)
    assert b["grant_rate"] == round(25 / 35, 4)
    assert b["gpc"] == "<10"  # none: still under the threshold
    assert b["shown"] == "<10"
    assert b["suppressed"] is False


def test_days_are_utc_days(api: Api) -> None:
    day = TODAY - timedelta(days=2)
    record(10, granted=True, when=at(day, 23))
    record(10, granted=True, when=at(day + timedelta(days=1), 0))
    buckets = by_bucket(report(api, by="day"))
    assert buckets[day.isoformat()]["granted"] == 10
    assert buckets[(day + timedelta(days=1)).isoformat()]["granted"] == 10


def test_by_week_buckets_start_on_monday(api: Api) -> None:
    monday = TODAY - timedelta(days=TODAY.weekday() + 14)
    record(6, granted=True, when=at(monday))
    record(6, granted=True, when=at(monday + timedelta(days=6)))  # the Sunday
    record(10, granted=True, when=at(monday + timedelta(days=7)))
    buckets = by_bucket(report(api, by="week"))
    assert buckets[monday.isoformat()]["granted"] == 12
    assert buckets[(monday + timedelta(days=7)).isoformat()]["granted"] == 10


def test_by_source_and_gpc(api: Api) -> None:
    when = at(TODAY)
    record(12, granted=True, when=when, purpose="targeted_ads")
    record(11, granted=False, when=when, purpose="targeted_ads", source=Source.GPC,
           method=IndicationMethod.GPC)  # fmt: skip
    buckets = by_bucket(report(api, purpose="targeted_ads", by="source"))
    assert buckets["api"]["granted"] == 12 and buckets["api"]["gpc"] == "<10"
    assert buckets["gpc"]["refused"] == 11 and buckets["gpc"]["gpc"] == 11
    assert buckets["gpc"]["grant_rate"] is None  # built on granted = 0
    assert buckets["api"]["shown"] is None  # not counted per source


def test_by_jurisdiction_reads_the_receipt_context(api: Api) -> None:
    record(10, granted=True, when=at(TODAY), jurisdiction="FR")
    record(10, granted=False, when=at(TODAY), jurisdiction="US-CA")
    record(10, granted=True, when=at(TODAY))
    buckets = by_bucket(report(api, by="jurisdiction"))
    assert buckets["FR"]["granted"] == 10
    assert buckets["US-CA"]["refused"] == 10
    assert buckets["unknown"]["granted"] == 10
    assert all(b["shown"] is None for b in buckets.values())


def test_by_property_counts_what_its_key_recorded(api: Api, purposes: dict[str, Any]) -> None:
    prop, _ = make_property(purposes)
    key_actor = Actor.for_client(prop.api_client)
    record(10, granted=True, when=at(TODAY), actor=key_actor, source=Source.BANNER,
           method=IndicationMethod.BUTTON)  # fmt: skip
    record(20, granted=True, when=at(TODAY))  # a back end's, not the property's
    buckets = report(api, by="property")
    assert [b["bucket"] for b in buckets] == ["shop"]
    assert buckets[0]["granted"] == 10


# --- defaults, validation, scope ----------------------------------------------------------


def test_defaults_to_the_last_30_days_by_day(api: Api) -> None:
    record(10, granted=True, when=at(TODAY - timedelta(days=29)))
    record(10, granted=True, when=at(TODAY - timedelta(days=30)))
    body = api.get(URL, purpose="analytics").json()
    assert body["from"] == (TODAY - timedelta(days=29)).isoformat()
    assert body["to"] == TODAY.isoformat()
    assert body["by"] == "day"
    assert [b["bucket"] for b in body["buckets"]] == [(TODAY - timedelta(days=29)).isoformat()]


def test_from_and_to_include_both_days(api: Api) -> None:
    start = TODAY - timedelta(days=60)
    record(10, granted=True, when=at(start, 0))
    record(10, granted=True, when=at(start + timedelta(days=1), 23))
    buckets = report(
        api, **{"from": start.isoformat(), "to": (start + timedelta(days=1)).isoformat()}
    )
    assert len(buckets) == 2


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "invalid_request"),
        ({"purpose": "analytics", "by": "month"}, "invalid_request"),
        ({"purpose": "analytics", "from": "2026-13-01"}, "invalid_request"),
        ({"purpose": "analytics", "to": "yesterday"}, "invalid_request"),
        ({"purpose": "analytics", "from": "2026-05-02", "to": "2026-05-01"}, "invalid_request"),
        ({"purpose": "analytics", "to": "0001-01-05"}, "invalid_request"),
        ({"purpose": "no_such_purpose"}, "unknown_purpose"),
        ({"purpose": ""}, "invalid_request"),
        ({"purpose": "analytics\n"}, "invalid_request"),
        ({"purpose": "analytics", "from": ""}, "invalid_request"),
        ({"purpose": "analytics", "by": ""}, "invalid_request"),
    ],
)
def test_bad_parameters_are_400_in_the_error_shape(
    api: Api, params: dict[str, Any], code: str
) -> None:
    assert_error(api.get(URL, **params), 400, code)


def test_needs_the_admin_scope(make_api: Any, purposes: dict[str, Any]) -> None:
    assert_error(make_api("checks", "consent:read").get(URL, purpose="analytics"), 403,
                 "permission_denied")  # fmt: skip
    assert_error(Api(None).get(URL, purpose="analytics"), 401, "not_authenticated")


# --- small counts -------------------------------------------------------------------------


def test_small_buckets_merge_into_one_suppressed_bucket(api: Api) -> None:
    big, small_a, small_b = (TODAY - timedelta(days=n) for n in (1, 2, 3))
    record(20, granted=True, when=at(big))
    record(10, granted=False, when=at(big))
    record(5, granted=True, when=at(small_a))
    record(4, granted=True, when=at(small_b))
    record(3, granted=False, when=at(small_b))
    buckets = report(api, by="day")
    assert [b["bucket"] for b in buckets] == [big.isoformat(), None]
    merged = buckets[-1]
    assert merged["suppressed"] is True
    # 9 grants and 3 refusals together: each still under 10, so no rate either.
    assert (merged["granted"], merged["refused"], merged["grant_rate"]) == ("<10", "<10", None)


def test_no_difference_of_totals_reveals_a_small_bucket(api: Api) -> None:
    """The answer holds no total, and a lone small bucket shows no figure of its own."""
    big, small = TODAY - timedelta(days=1), TODAY - timedelta(days=2)
    record(30, granted=True, when=at(big))
    record(3, granted=True, when=at(small))
    body = api.get(URL, purpose="analytics", by="day").json()
    assert set(body) == {"purpose", "from", "to", "by", "buckets"}
    merged = body["buckets"][-1]
    figures = [merged[k] for k in ("granted", "refused", "withdrawn", "gpc", "shown")]
    assert figures == ["<10"] * 5 and merged["grant_rate"] is None
    assert body["buckets"][0]["granted"] == 30  # the big day, without the small one


def test_a_rate_built_on_a_small_count_is_null(api: Api) -> None:
    record(40, granted=True, when=at(TODAY))
    record(4, granted=False, when=at(TODAY))
    (bucket,) = report(api, by="day")
    assert bucket["granted"] == 40 and bucket["refused"] == "<10"
    assert bucket["grant_rate"] is None  # 40/44 would give the 4 away


def test_ten_events_are_enough_to_show_a_bucket(api: Api) -> None:
    record(10, granted=True, when=at(TODAY))
    record(9, granted=True, when=at(TODAY - timedelta(days=1)))
    buckets = report(api, by="day")
    assert buckets[0]["bucket"] == TODAY.isoformat() and buckets[0]["granted"] == 10
    assert buckets[1]["suppressed"] is True and buckets[1]["granted"] == "<10"


# --- shown ---------------------------------------------------------------------------------


def config(key: str, *, device: str | None = None) -> dict[str, Any]:
    headers = {"Origin": ORIGIN, **({"X-Device-Id": device} if device else {})}
    response = Api(key).get("/api/v1/banner/config", headers=headers)
    assert response.status_code == 200, response.content
    return response.json()


def test_banner_answers_that_ask_are_counted_and_flushed(
    api: Api, purposes: dict[str, Any]
) -> None:
    prop, key = make_property(purposes)
    for _ in range(12):
        assert config(key)["ask"] is True  # first visits: asked
    # One person who has decided everything is not asked again: not counted.
    device = config(key)["device_id"]
    Api(key).post(
        "/api/v1/banner/consents",
        {"device_id": device, "decisions": [{"purpose": "analytics", "granted": True},
                                            {"purpose": "targeted_ads", "granted": False}]},
        headers={"Origin": ORIGIN},
    )  # fmt: skip
    assert config(key, device=device)["ask"] is False
    assert not BannerShown.objects.exists()  # until the flush
    banner_shown_flush_task()
    banner_shown_flush_task()  # twice: the same figure, never added twice
    row = BannerShown.objects.get()
    assert (row.property_id, row.day, row.count) == (prop.pk, TODAY, 13)
    record(10, granted=True, when=at(TODAY))
    assert by_bucket(report(api, by="day"))[TODAY.isoformat()]["shown"] == 13
    assert (
        by_bucket(report(api, by="week"))[(TODAY - timedelta(days=TODAY.weekday())).isoformat()][
            "shown"
        ]
        == 13
    )


def test_shown_by_property(api: Api, purposes: dict[str, Any]) -> None:
    prop, _ = make_property(purposes)
    BannerShown.objects.create(day=TODAY, property=prop, count=250)
    key_actor = Actor.for_client(prop.api_client)
    record(10, granted=True, when=at(TODAY), actor=key_actor)
    (bucket,) = report(api, by="property")
    assert (bucket["bucket"], bucket["shown"]) == ("shop", 250)
    # Not a property that shows the purpose: its banners asked about something else.
    assert report(api, purpose="ml_training", by="property") == []


def test_the_flush_never_lowers_a_stored_count(purposes: dict[str, Any]) -> None:
    prop, _ = make_property(purposes)
    counter = shown_counter()
    for _ in range(3):
        counter.count(property_id=prop.pk, day=TODAY)
    assert banner_shown_flush() == 1
    cache.clear()  # Redis lost the day's hash
    counter.count(property_id=prop.pk, day=TODAY)
    assert banner_shown_flush() == 0
    assert BannerShown.objects.get().count == 3


def test_without_redis_each_process_adds_its_counts_now_and_then(
    purposes: dict[str, Any],
) -> None:
    prop, _ = make_property(purposes)
    counter = LocalShownCounter(every=3600)
    counter.count(property_id=prop.pk, day=TODAY)
    counter.count(property_id=prop.pk, day=TODAY)
    assert not BannerShown.objects.exists()  # not yet due
    assert counter.write() == 1
    other_process = LocalShownCounter(every=0)  # due at once
    other_process.count(property_id=prop.pk, day=TODAY)
    assert other_process.flush(today=TODAY) == 0  # the beat's flush has nothing of its own
    assert BannerShown.objects.get().count == 3


def test_a_days_counts_expire_after_the_last_flush_that_copies_them(
    purposes: dict[str, Any],
) -> None:
    prop, _ = make_property(purposes)
    counter = shown_counter()
    counter.count(property_id=prop.pk, day=TODAY)
    ttl = counter.client.ttl(f"consent:banner_shown:{TODAY.isoformat()}")  # type: ignore[attr-defined]
    assert timedelta(days=8) < timedelta(seconds=ttl) <= timedelta(days=9)


def test_a_purposes_events_over_a_window_read_one_index_range():
    """(purpose, effective_at) replaced the foreign key's own index on purpose (migration
    0018): the rates read a window, and writes keep as many indexes as before."""
    from django.db import connection

    with connection.cursor() as cursor:
        indexes = {
            name: info["columns"]
            for name, info in connection.introspection.get_constraints(
                cursor, "consent_consentevent"
            ).items()
            if info["index"] and not info["primary_key"]
        }
    assert indexes["consent_event_purpose_time"] == ["purpose_id", "effective_at"]
    assert ["purpose_id"] not in indexes.values()
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT count(*) FROM consent_consentevent WHERE purpose_id = 1 "
            "AND effective_at >= now() - interval '30 days'"
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    assert "consent_event_purpose_time" in plan
