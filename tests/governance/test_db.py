"""governance.db's helpers for bulk writes: array literals read back exactly as the values,
and the collector pause nests and restores."""

from __future__ import annotations

import enum
import gc
import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection

from governance.db import array_literal, gc_paused

pytestmark = pytest.mark.django_db


class Plain(str, enum.Enum):  # noqa: UP042 - str() says "Plain.A", the text is "a"
    A = "a"


TEXTS = ["plain", "NULL", 'with "quotes"', "back\\slash", "{,}", " spaced ", "", "é😀"]


@pytest.mark.parametrize(
    ("values", "cast"),
    [
        (TEXTS, "text[]"),
        ([uuid.uuid4(), uuid.uuid4()], "uuid[]"),
        ([1, -2, 2**40], "bigint[]"),
        ([b'\x00\\"ab', b""], "bytea[]"),
        ([], "text[]"),
        (["a", None, 'b"'], "text[]"),
        ([None, None], "timestamptz[]"),
        (
            [datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), None, datetime(2026, 1, 2, tzinfo=UTC)],
            "timestamptz[]",
        ),
        ([True, False], "boolean[]"),
        ([Plain.A, "b"], "text[]"),
    ],
)
def test_array_literal_reads_back_as_the_values(values, cast):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT %s::{cast}", [array_literal(values)])
        (read,) = cursor.fetchone()
    assert [bytes(v) if isinstance(v, memoryview) else v for v in read] == values


def test_gc_paused_nests_and_restores():
    assert gc.isenabled()
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
