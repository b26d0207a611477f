"""`python manage.py create_app_role`: the least-privileged PostgreSQL role the app runs as.

Run as the owner (the role migrations run as). The app role may read and write rows, use
sequences and call the owner's functions, and nothing else: it owns no table, so it cannot
ALTER, DISABLE or DROP the ledger's or the audit trail's trigger, nor drop or truncate their
tables; it deletes ledger and audit rows only through the owner-owned SECURITY DEFINER
purge functions (consent 0007, governance 0008). Default
privileges make tables created by later migrations reachable too. Idempotent.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction


def app_role_statements(*, role: str, owner: str, database: str, password: str | None) -> list:
    from psycopg import sql

    r, o, d = sql.Identifier(role), sql.Identifier(owner), sql.Identifier(database)
    statements = [
        sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC"),
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(d, r),
        sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(r),
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(
            r
        ),
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(r),
        # The owner-owned purge functions (ledger_purge_subject, audit_purge_before, ...):
        # the app role's only way past the ledger's and the audit trail's triggers.
        sql.SQL("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {}").format(r),
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public "
            "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}"
        ).format(o, r),
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public "
            "GRANT USAGE, SELECT ON SEQUENCES TO {}"
        ).format(o, r),
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO {}"
        ).format(o, r),
    ]
    if password:
        statements.insert(
            0, sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(r, sql.Literal(password))
        )
    return statements


def app_role_ensure(*, role: str, password: str | None = None) -> None:
    """Creates the role if missing (NOLOGIN until given a password) and grants it rows only."""
    from psycopg import sql

    if connection.vendor != "postgresql":
        raise CommandError("The app role is a PostgreSQL feature.")
    raw = connection.connection
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT current_user, current_database()")
        owner, database = cursor.fetchone()
        if role == owner:
            raise CommandError("The app role must not be the owner the command runs as.")
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        if cursor.fetchone() is None:
            create = sql.SQL(
                "CREATE ROLE {} NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOBYPASSRLS"
            ).format(sql.Identifier(role))
            cursor.execute(create.as_string(raw))
        for statement in app_role_statements(
            role=role, owner=owner, database=database, password=password
        ):
            cursor.execute(statement.as_string(raw))


class Command(BaseCommand):
    help = (
        "Create (or re-grant) the PostgreSQL role the app runs as: rows only, no DDL. "
        "Run as the owner that runs migrations."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--role", default="governance_app")
        parser.add_argument(
            "--password-env",
            default="APP_DB_PASSWORD",
            help="Environment variable holding the role's password (unset: NOLOGIN).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        app_role_ensure(role=options["role"], password=os.environ.get(options["password_env"]))
        self.stdout.write(f"role {options['role']} may read and write rows, nothing more")
