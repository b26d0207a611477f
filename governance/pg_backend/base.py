"""Django's PostgreSQL backend with a health check that costs no round trip.

With CONN_HEALTH_CHECKS Django runs `SELECT 1` before the first query of every request on
a reused connection: a round trip on every API call, the hot ones included. A healthy idle
connection has nothing to read, while one the server closed (a restart, an idle timeout,
pg_terminate_backend) has its FATAL message or end of file waiting; so a zero-timeout poll
of the socket tells them apart. A silently dropped network path is not seen here, as it
would not be by `SELECT 1` short of a TCP timeout either.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql.base import DatabaseWrapper as PostgresDatabaseWrapper
from psycopg import pq


class DatabaseWrapper(PostgresDatabaseWrapper):
    def is_usable(self) -> bool:
        conn = self.connection
        if conn is None or conn.closed or conn.broken:
            return False
        if conn.info.transaction_status != pq.TransactionStatus.IDLE:
            return bool(super().is_usable())  # mid-transaction: ask the server
        try:
            readable, _, _ = select.select([conn.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable
