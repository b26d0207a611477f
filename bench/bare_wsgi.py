"""The single-check baseline: a bare WSGI app doing the same lookup with psycopg, no Django.

Served by the same gunicorn, under the same load, as GET /api/v1/subjects/{id}/checks/{p}.
Reads BENCH_DATABASE_URL and SUBJECT_HASH_KEY from the environment.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

import psycopg

_KEY = os.environ["SUBJECT_HASH_KEY"].encode()
_SQL = """
SELECT cs.status, cs.expires_at, cs.event_id::text
FROM consent_subject s
JOIN consent_consentstate cs ON cs.subject_id = s.id
JOIN consent_purpose p ON p.id = cs.purpose_id AND p.key = %s
WHERE s.namespace = 'account' AND s.key = %s
"""
_conn: psycopg.Connection[Any] | None = None


def _connection() -> psycopg.Connection[Any]:
    global _conn
    if _conn is None or _conn.closed:
        _conn = psycopg.connect(os.environ["BENCH_DATABASE_URL"], autocommit=True)
    return _conn


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    # /subjects/<id>/checks/<purpose>
    parts = environ.get("PATH_INFO", "").split("/")
    if len(parts) < 5 or parts[-2] != "checks":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    subject_id, purpose = unquote(parts[-3]), unquote(parts[-1])
    key = hmac.new(_KEY, subject_id.encode(), hashlib.sha256).hexdigest()
    row = _connection().execute(_SQL, (purpose, key)).fetchone()
    allowed = row is not None and row[0] == "granted"
    body = json.dumps({"subject_id": subject_id, "purpose": purpose, "allowed": allowed}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
