"""The audit trail is append-only in the database: UPDATE is always refused, DELETE only
inside governance.audit.audit_purge_allowed() (a transaction-local setting, for retention).
"""

from django.db import migrations

PG_FORWARD = """
CREATE OR REPLACE FUNCTION governance_audit_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND coalesce(current_setting('governance.audit_purge', true), '') = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit trail is append-only: %% refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER governance_audit_append_only
    BEFORE UPDATE OR DELETE ON governance_auditevent
    FOR EACH ROW EXECUTE FUNCTION governance_audit_guard();
"""

PG_REVERSE = """
DROP TRIGGER IF EXISTS governance_audit_append_only ON governance_auditevent;
DROP FUNCTION IF EXISTS governance_audit_guard();
"""

SQLITE_FORWARD = [
    """
    CREATE TRIGGER governance_audit_no_update
    BEFORE UPDATE ON governance_auditevent
    BEGIN
        SELECT RAISE(ABORT, 'audit trail is append-only: UPDATE refused');
    END;
    """,
]

SQLITE_REVERSE = ["DROP TRIGGER IF EXISTS governance_audit_no_update;"]


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_FORWARD)
    elif vendor == "sqlite":
        for statement in SQLITE_FORWARD:
            schema_editor.execute(statement)


def reverse(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_REVERSE)
    elif vendor == "sqlite":
        for statement in SQLITE_REVERSE:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("governance", "0003_webhooks")]
    operations = [migrations.RunPython(forward, reverse)]
