"""The database itself refuses UPDATE on the ledger, and DELETE outside the purge path.

The purge path makes its intent visible to the trigger by inserting a LedgerPurgeGuard row
inside its own transaction (and removing it before commit), so no other connection ever
sees it. This works alike on PostgreSQL and SQLite. See docs/decisions/0002.
"""

from django.db import migrations

PG_FORWARD = """
CREATE OR REPLACE FUNCTION consent_ledger_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM consent_ledgerpurgeguard) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'consent ledger is append-only: %% refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER consent_ledger_append_only
    BEFORE UPDATE OR DELETE ON consent_consentevent
    FOR EACH ROW EXECUTE FUNCTION consent_ledger_guard();
"""

PG_REVERSE = """
DROP TRIGGER IF EXISTS consent_ledger_append_only ON consent_consentevent;
DROP FUNCTION IF EXISTS consent_ledger_guard();
"""

SQLITE_FORWARD = [
    """
    CREATE TRIGGER consent_ledger_no_update
    BEFORE UPDATE ON consent_consentevent
    BEGIN
        SELECT RAISE(ABORT, 'consent ledger is append-only: UPDATE refused');
    END;
    """,
    """
    CREATE TRIGGER consent_ledger_no_delete
    BEFORE DELETE ON consent_consentevent
    WHEN NOT EXISTS (SELECT 1 FROM consent_ledgerpurgeguard)
    BEGIN
        SELECT RAISE(ABORT, 'consent ledger is append-only: DELETE refused');
    END;
    """,
]

SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS consent_ledger_no_update;",
    "DROP TRIGGER IF EXISTS consent_ledger_no_delete;",
]


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_FORWARD)
    elif vendor == "sqlite":
        for statement in SQLITE_FORWARD:
            schema_editor.execute(statement)
    else:
        raise RuntimeError(f"No append-only trigger for database vendor {vendor!r}")


def reverse(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_REVERSE)
    elif vendor == "sqlite":
        for statement in SQLITE_REVERSE:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("consent", "0001_initial")]
    operations = [migrations.RunPython(forward, reverse)]
