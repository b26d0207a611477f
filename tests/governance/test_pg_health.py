"""Connections the server closed are noticed before a request uses them, without a query."""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_connection_the_server_terminated_is_found_unusable():
    connection.ensure_connection()
    assert connection.vendor == "postgresql" and connection.is_usable()
    pid = connection.connection.info.backend_pid
    params = connection.get_connection_params()
    dsn = {k: params[k] for k in ("host", "port", "user", "dbname") if params.get(k)}
    try:
        with psycopg.connect(**dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 10
        while connection.is_usable() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not connection.is_usable()
    finally:
        connection.close()
    # Django reconnects on the next use, as it does at the start of a request.
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_a_healthy_idle_connection_is_usable_without_a_round_trip():
    connection.ensure_connection()
    assert connection.is_usable()
    assert connection.is_usable()  # and again: polling reads nothing
