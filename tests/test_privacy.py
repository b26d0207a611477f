"""No plaintext subject identifier reaches the database or the logs."""

from __future__ import annotations

import io
import logging
import uuid

import pytest
from django.db import connection

from governance.logging import RedactSubjectIdentifiers, redact
from tests.conftest import Api

pytestmark = pytest.mark.django_db


def _redacting_handlers() -> list[logging.StreamHandler]:
    return [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler)
        and any(isinstance(f, RedactSubjectIdentifiers) for f in h.filters)
    ]


def _all_database_text() -> list[str]:
    texts = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        texts.append(bytes(value).decode("latin-1"))
                    elif value is not None:
                        texts.append(str(value))
    return texts


def test_identifiers_reach_neither_the_database_nor_the_logs(api):
    identifier = f"probe-{uuid.uuid4().hex}@example.com"
    handlers = _redacting_handlers()
    assert handlers, "the console handler must carry the redaction filter"
    captured = io.StringIO()
    previous = [h.setStream(captured) for h in handlers]
    try:
        logging.getLogger().setLevel(logging.DEBUG)
        body = {
            "subject_id": identifier,
            "decisions": [{"purpose": "analytics", "granted": True}],
            "indication_method": "button",
        }
        assert (
            api.post("/api/v1/consents", body, headers={"Idempotency-Key": "k1"}).status_code == 201
        )
        assert (
            api.post("/api/v1/consents", body, headers={"Idempotency-Key": "k1"}).status_code == 201
        )
        api.get(f"/api/v1/subjects/{identifier}/consents")
        api.get(f"/api/v1/subjects/{identifier}/history")
        api.post(f"/api/v1/subjects/{identifier}/withdrawals", {})
        Api(None).get(f"/api/v1/subjects/{identifier}/consents")  # a 401, which Django logs
        Api(api.key).get(f"/api/v1/subjects/{identifier}/history", limit=0)  # a 400
    finally:
        for handler, stream in zip(handlers, previous, strict=True):
            handler.setStream(stream)
        logging.getLogger().setLevel(logging.INFO)
    log_text = captured.getvalue()
    assert "/api/v1/subjects/<redacted>/" in log_text  # the requests were logged...
    assert identifier not in log_text  # ...without the identifier
    assert not [t for t in _all_database_text() if identifier in t]


def test_redaction_covers_every_subject_path_shape():
    for path in (
        "GET /api/v1/subjects/alice@example.com/consents HTTP/1.1",
        "/api/v1/subjects/a/b/c/history?limit=2",
        '"POST /api/v1/subjects/bob%40x/withdrawals HTTP/1.1" 201',
        "/api/v1/subjects/carol/checks/analytics",
        "/api/v1/subjects/dave/decisions",
        '"GET /admin/consent/subject/?o=1&q=erin%40example.com HTTP/1.1" 200',
    ):
        cleaned = redact(path)
        assert "<redacted>" in cleaned
        for name in ("alice", "a/b/c", "bob", "carol", "dave", "erin"):
            assert name not in cleaned


def test_redaction_covers_admin_changelist_filters():
    line = '"GET /admin/consent/subject/1/change/?_changelist_filters=q%3Derin%40x HTTP/1.1"'
    assert "erin" not in redact(line)
