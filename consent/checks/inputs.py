"""What a check is asked: identifiers turned into subject keys, the id-set digest, `as_of`."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import repeat
from typing import Any

from django.conf import settings
from django.utils import timezone

from governance.errors import InvalidRequest

MAX_BULK_IDS = 100_000


class SubjectHasher:
    """HMAC-SHA256 of many identifiers, as `identity.subject_key`, without re-keying each time.

    The inner and outer SHA-256 states are keyed once and copied per identifier, which is
    about twice as fast as `hmac.new` per call on the bulk path.
    """

    def __init__(self, key: str | bytes | None = None) -> None:
        if key is None:
            key = settings.SUBJECT_HASH_KEY
        raw = key if isinstance(key, bytes) else key.encode()
        if len(raw) > 64:
            raw = hashlib.sha256(raw).digest()
        raw = raw.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in raw))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in raw))

    def __call__(self, identifier: str) -> str:
        inner = self._inner.copy()
        inner.update(identifier.encode("utf-8"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def many(self, identifiers: Sequence[str]) -> list[str]:
        # __call__ inlined: on 100,000 ids a method call each is a measurable share.
        inner0, outer0 = self._inner, self._outer
        keys: list[str] = []
        append = keys.append
        for identifier in identifiers:
            inner = inner0.copy()
            inner.update(identifier.encode("utf-8"))
            outer = outer0.copy()
            outer.update(inner.digest())
            append(outer.hexdigest())
        return keys

    def digests(self, values: Sequence[str]) -> list[bytes]:
        """The raw 32-byte HMACs of `values` (UTF-8): a snapshot's pseudonyms."""
        inner0, outer0 = self._inner, self._outer
        out: list[bytes] = []
        append = out.append
        for value in values:
            inner = inner0.copy()
            inner.update(value.encode("utf-8"))
            outer = outer0.copy()
            outer.update(inner.digest())
            append(outer.digest())
        return out


def id_set_digest_add(total: int, keys: Sequence[str]) -> int:
    """An order-independent digest of the ids asked about: the sum of their keyed hashes.

    Additive, so a stream can fold chunk after chunk in constant memory, and the same ids
    in any order give the same digest (a training run can be re-verified later).
    """
    return (total + sum(map(int, keys, repeat(16)))) % (1 << 256)


def digest_hex(value: int) -> str:
    return f"{value:064x}"


def as_of_parse(raw: Any, *, now: datetime | None = None) -> datetime | None:
    """ISO-8601 instant, not in the future; None when absent. Naive times are UTC."""
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise InvalidRequest("as_of must be an ISO-8601 string.", detail={"field": "as_of"})
    text = raw.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidRequest(
            "as_of must be an ISO-8601 date-time.", detail={"field": "as_of"}
        ) from exc
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    if parsed > (now or timezone.now()):
        raise InvalidRequest("as_of must not be in the future.", detail={"field": "as_of"})
    return parsed
