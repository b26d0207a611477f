"""What the benchmarks share: their own PostgreSQL database, made or re-made, and the CPU a
process has used, read from /proc (the benchmarks run beside the database)."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _names(url: str) -> tuple[str, str]:
    """The database's name, and the URL of the server's `postgres` database."""
    return url.rsplit("/", 1)[1].split("?")[0], url.rsplit("/", 1)[0] + "/postgres"


def ensure_database(url: str) -> None:
    """Creates the database `url` names unless it exists (its data is kept)."""
    import psycopg

    name, admin_url = _names(url)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def recreate_database(url: str) -> None:
    """Drops (closing its connections) and creates the database `url` names."""
    import psycopg

    name, admin_url = _names(url)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def cpu_seconds(pid: int) -> float:
    """The CPU seconds (user and system) process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS
