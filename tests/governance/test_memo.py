"""The per-process memo of the hot reads (governance.memo): what it keeps, for how long, and
what clears it. These tests run outside a transaction, where memos are used; time is passed
in. Changes are made by raw SQL where the point is that nothing told this process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from consent import services as consent_services
from consent.errors import UnknownPurpose
from consent.models import Purpose
from governance import services
from governance.api.auth import _key_lookup
from governance.keys import hash_key
from governance.memo import Memo, memos_clear, memos_version, unix_time
from governance.models import ApiKey
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def _revoke_behind_its_back(key: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE governance_apikey SET revoked_at = %s WHERE key_hash = %s",
            [timezone.now(), hash_key(key)],
        )


@pytest.mark.parametrize("lifetime", [1.0, 0])
def test_a_key_revoked_elsewhere_is_honoured_only_within_the_memo_lifetime(settings, lifetime):
    settings.HOT_READ_CACHE_SECONDS = lifetime
    _, key = factories.api_client(scopes=["consent:read"])
    now = timezone.now()
    assert _key_lookup(hash_key(key), now) is not None
    _revoke_behind_its_back(key)
    # Within the lifetime this process still honours what it read (with memos off, it
    # never does)...
    honoured = _key_lookup(hash_key(key), now + timedelta(seconds=0.9)) is not None
    assert honoured == (lifetime > 0.9)
    # ...and not a moment past it.
    assert _key_lookup(hash_key(key), now + timedelta(seconds=1.0)) is None


def test_a_revocation_in_this_process_takes_effect_at_once():
    client, key = factories.api_client(scopes=["consent:read"])
    now = timezone.now()
    assert _key_lookup(hash_key(key), now) is not None
    services.api_key_revoke(api_key=ApiKey.objects.get(client=client))
    assert _key_lookup(hash_key(key), now) is None


def test_a_rotation_grace_period_clears_the_memo(monkeypatch):
    client, old = factories.api_client(scopes=["consent:read"])
    now = timezone.now()
    assert _key_lookup(hash_key(old), now) is not None
    # The new key's save would clear the memo too: leave only the grace period's update.
    monkeypatch.setattr(services, "api_key_issue", lambda **kwargs: "")
    services.api_key_rotate(client=client, old_keys_expire_at=now - timedelta(seconds=1))
    assert _key_lookup(hash_key(old), now) is None


def test_deactivating_a_client_in_this_process_takes_effect_at_once():
    client, key = factories.api_client(scopes=["consent:read"])
    now = timezone.now()
    assert _key_lookup(hash_key(key), now) is not None
    client.active = False
    client.save()
    assert _key_lookup(hash_key(key), now) is None


def test_deleting_a_key_in_this_process_takes_effect_at_once():
    client, key = factories.api_client(scopes=["consent:read"])
    now = timezone.now()
    assert _key_lookup(hash_key(key), now) is not None
    ApiKey.objects.get(client=client).delete()
    assert _key_lookup(hash_key(key), now) is None


def test_a_read_made_before_a_clear_is_not_stored_after_it():
    memo = Memo()
    version = memos_version()
    memos_clear()  # another thread's commit, between this read and its put
    memo.put("k", "read before the clear", version=version, at=0.0)
    assert memo.get("k", at=0.0) is None
    memo.put("k", "read after it", version=memos_version(), at=0.0)
    assert memo.get("k", at=0.0) == "read after it"


def test_database_timestamps_become_unix_times():
    moment = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    assert unix_time(moment) == moment.timestamp()
    assert unix_time(moment.replace(tzinfo=None)) == moment.timestamp()  # SQLite: naive UTC
    assert unix_time("2026-12-02 03:00:00") == moment.timestamp()  # SQLite: an aggregate's text
    assert unix_time(None) is None


def test_a_memoised_key_is_not_used_past_its_expiry(settings):
    settings.HOT_READ_CACHE_SECONDS = 60.0
    client, _ = factories.api_client(scopes=["consent:read"])
    now = timezone.now()
    key = services.api_key_issue(client=client, expires_at=now + timedelta(seconds=5))
    assert _key_lookup(hash_key(key), now) is not None
    assert _key_lookup(hash_key(key), now + timedelta(seconds=4)) is not None
    assert _key_lookup(hash_key(key), now + timedelta(seconds=5)) is None


def test_unknown_keys_are_not_memoised():
    client, _ = factories.api_client(scopes=["consent:read"])
    key = "sk_" + "x" * 40
    assert _key_lookup(hash_key(key), timezone.now()) is None
    # bulk_create sends no model signal: only the absence of a memo entry lets it work.
    ApiKey.objects.bulk_create([ApiKey(client=client, prefix="sk_xxxxx", key_hash=hash_key(key))])
    assert _key_lookup(hash_key(key), timezone.now()) is not None


def test_each_lookup_returns_its_own_client_instance():
    _, key = factories.api_client(scopes=["consent:read"])
    now = timezone.now()
    first, second = _key_lookup(hash_key(key), now), _key_lookup(hash_key(key), now)
    assert first is not None and second is not None
    assert first[0] is not second[0] and first[0].pk == second[0].pk


def test_inside_a_transaction_reads_go_to_the_database():
    _, key = factories.api_client(scopes=["consent:read"])
    now = timezone.now()
    assert _key_lookup(hash_key(key), now) is not None
    with transaction.atomic():
        _revoke_behind_its_back(key)
        assert _key_lookup(hash_key(key), now) is None


# --- purposes ---------------------------------------------------------------------------


def _deactivate_behind_its_back(key: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("UPDATE consent_purpose SET active = false WHERE key = %s", [key])


def test_a_purposes_read_is_reused_for_its_lifetime():
    factories.purpose("analytics")
    now = timezone.now()
    assert set(consent_services._purposes_by_key(["analytics"], now)) == {"analytics"}
    _deactivate_behind_its_back("analytics")
    assert consent_services._purposes_by_key(["analytics"], now + timedelta(seconds=0.5))
    with pytest.raises(UnknownPurpose):
        consent_services._purposes_by_key(["analytics"], now + timedelta(seconds=1))


def test_saving_a_purpose_in_this_process_clears_the_memo():
    purpose = factories.purpose("analytics")
    now = timezone.now()
    consent_services._purposes_by_key(["analytics"], now)
    Purpose.objects.filter(pk=purpose.pk).update(active=False)  # no signal: still memoised
    assert consent_services._purposes_by_key(["analytics"], now)
    purpose.refresh_from_db()
    purpose.save()
    with pytest.raises(UnknownPurpose):
        consent_services._purposes_by_key(["analytics"], now)


def test_a_scheduled_notice_version_ends_the_memo_when_it_is_published(settings):
    settings.HOT_READ_CACHE_SECONDS = 60.0
    purpose = factories.purpose("analytics")
    now = timezone.now()
    consent_services.notice_version_publish(
        purpose=purpose,
        texts={"en": ("v2", "Version two.")},
        published_at=now + timedelta(seconds=5),
    )
    current = consent_services._purposes_by_key(["analytics"], now)["analytics"]
    assert current.current_notice == 1  # type: ignore[attr-defined]
    later = consent_services._purposes_by_key(["analytics"], now + timedelta(seconds=4))
    assert later["analytics"].current_notice == 1  # type: ignore[attr-defined]
    published = consent_services._purposes_by_key(["analytics"], now + timedelta(seconds=5))
    assert published["analytics"].current_notice == 2  # type: ignore[attr-defined]


def test_an_unknown_purpose_is_not_memoised():
    factories.purpose("analytics")
    with pytest.raises(UnknownPurpose):
        consent_services._purposes_by_key(["analytics", "later"], timezone.now())
    # bulk_create sends no model signal: only the absence of a memo entry lets it be found.
    Purpose.objects.bulk_create([Purpose(key="later", name="Later", legal_basis="consent")])
    found = consent_services._purposes_by_key(["analytics", "later"], timezone.now())
    assert set(found) == {"analytics", "later"}


def test_publishing_a_notice_version_in_this_process_takes_effect_at_once():
    purpose = factories.purpose("analytics")
    now = timezone.now()
    assert consent_services._purposes_by_key(["analytics"], now)["analytics"].current_notice == 1  # type: ignore[attr-defined]
    consent_services.notice_version_publish(
        purpose=purpose, texts={"en": ("v2", "Version two.")}, published_at=now
    )
    assert consent_services._purposes_by_key(["analytics"], now)["analytics"].current_notice == 2  # type: ignore[attr-defined]


def test_a_consent_write_outside_a_transaction_uses_the_memo_and_records_correctly():
    factories.purpose("analytics")
    first = factories.record("memo-subject-1", analytics=True)
    assert consent_services._PURPOSES.get(("analytics",), at=timezone.now().timestamp())
    second = factories.record("memo-subject-2", analytics=False)
    assert first.events[0].purpose.key == second.events[0].purpose.key == "analytics"
    assert first.events[0].notice_version == second.events[0].notice_version == 1
