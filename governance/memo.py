"""A short per-process memo for the hot paths' fixed reads: the API key lookup that every
request makes and the purposes a consent write names.

Each is one round trip, which at hundreds of requests a second costs as much as the work
it guards. A memo entry lives HOT_READ_CACHE_SECONDS (default 1 s) at most, and never past
a deadline its loader gives (a key's expiry, a notice version's publication). Saving one of
the models it mirrors, in this process, clears it at once and again on commit; another
process sees the change when its entry lapses, so a revoked key or a deactivated purpose
may be honoured for up to that long by other workers. 0 turns memos off.

Memos are used only outside a transaction. Inside one (a service's, a caller's, or a test's)
reads go to the database, so a transaction always sees its own writes.

Why not Django's cache framework: its in-process backend pickles every value and takes a
lock, costing about what the round trip does. Why not cachetools: entries need their own
deadlines, the in-transaction rule and clearing from model signals, which is most of this.
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Model
from django.db.models.signals import post_delete, post_save
from django.utils.dateparse import parse_datetime

_MEMOS: list[Memo] = []
# Moves on every clear. A reader takes it before its database read and stores the answer
# only if it has not moved, so a concurrent clear cannot be undone by a read made before it.
_version = 0


def memos_version() -> int:
    return _version


class Memo:
    """Values by key, each until min(now + HOT_READ_CACHE_SECONDS, its own deadline).
    Safe across threads under the GIL: a racing reader at worst misses an entry."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        _MEMOS.append(self)

    @staticmethod
    def usable() -> bool:
        return settings.HOT_READ_CACHE_SECONDS > 0 and not connection.in_atomic_block

    def get(self, key: Hashable, *, at: float) -> Any | None:
        """The value stored under `key` if it is still fresh at `at` (a Unix time) and
        memos are usable here."""
        if not self.usable():
            return None
        found = self._entries.get(key)
        if found is None:
            return None
        until, value = found
        if at >= until:
            self._entries.pop(key, None)
            return None
        return value

    def put(
        self, key: Hashable, value: Any, *, version: int, at: float, until: float | None = None
    ) -> None:
        """Stores `value` (never None), read at `at` after `memos_version()` gave `version`,
        until the memo's lifetime or `until` (both Unix times), whichever comes first.
        Does nothing where memos are not usable or a clear came since `version`."""
        if not self.usable() or version != _version:
            return
        lapse = at + settings.HOT_READ_CACHE_SECONDS
        if len(self._entries) > 10_000:
            self._entries.clear()  # a bound, not an eviction policy: entries live a second
        self._entries[key] = (min(lapse, until) if until is not None else lapse, value)


def memos_clear(*args: Any, **kwargs: Any) -> None:
    """Clears every memo now and again when the current transaction commits, so a
    concurrent request of this process cannot keep what it read before the commit. A model
    signal receiver (takes and ignores the signal's arguments)."""
    _clear_all()
    if connection.in_atomic_block:
        transaction.on_commit(_clear_all)


def memos_clear_on_change(*models: type[Model]) -> None:
    """Saving or deleting an instance of any of `models` clears every memo (memos_clear).
    Called from the apps' ready() for the models a memo mirrors."""
    for model in models:
        for signal in (post_save, post_delete):
            signal.connect(memos_clear, sender=model, dispatch_uid=f"memo-{model.__name__}")


def _clear_all() -> None:
    global _version
    _version += 1
    for memo in _MEMOS:
        memo._entries.clear()


def unix_time(value: datetime | str | None) -> float | None:
    """A timestamp column's value as a Unix time, for a deadline: PostgreSQL gives aware
    datetimes; SQLite gives naive UTC datetimes, or text for an aggregate's result."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()
