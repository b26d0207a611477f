"""On PostgreSQL, owner-owned SECURITY DEFINER functions become the only way past the audit
trail's trigger:

- audit_purge_before(cutoff, lo, hi, keep_ids): retention. Deletes rows older than the cutoff
  (in the ctid range [lo, hi) when given, so the purge stays chunked and set-based), except
  the ids kept and the rows about retention policies; never a row younger than the
  database's floor (RETENTION_MINIMUM_ACCOUNTABILITY_DAYS, written into the function's own
  settings by `migrate`), whatever cutoff the caller passes.
- audit_purge_subject(subject_key): a person's erasure. Deletes the rows naming them, except
  the record of their rights requests and the rows about retention policies.

The trigger used to let DELETE through whenever the transaction set governance.audit_purge,
which any role may set. Now the deleting statement must also run as the table's owner, which
the app role only ever is inside these functions. SQLite keeps its guard (UPDATE refused,
DELETE unguarded). See docs/decisions/0002.
"""

from django.conf import settings
from django.db import migrations

GUARD = """
CREATE OR REPLACE FUNCTION governance_audit_guard() RETURNS trigger AS $$
BEGIN
    -- The setting alone is not enough (any role may set it): the statement must also run
    -- as the table's owner, i.e. inside audit_purge_before / audit_purge_subject. The
    -- setting is read first so that refused statements never pay for the catalog lookup.
    IF TG_OP = 'DELETE'
       AND coalesce(current_setting('governance.audit_purge', true), '') = 'on'
       AND current_user = (SELECT pg_catalog.pg_get_userbyid(relowner)
                             FROM pg_catalog.pg_class WHERE oid = TG_RELID) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit trail is append-only: %% refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
"""

OLD_GUARD = """
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
"""

FUNCTIONS = """
CREATE OR REPLACE FUNCTION audit_purge_before(
    p_cutoff timestamptz, p_lo tid DEFAULT NULL, p_hi tid DEFAULT NULL,
    p_keep_ids bigint[] DEFAULT '{}'
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, {schema}, pg_temp
SET governance.audit_floor_days = '{floor}'
AS $$
DECLARE
    floor_days integer := current_setting('governance.audit_floor_days')::integer;
    cutoff timestamptz := least(p_cutoff, now() - make_interval(days => floor_days));
    removed bigint;
BEGIN
    PERFORM set_config('governance.audit_purge', 'on', true);
    -- Plain bounds (no OR) keep this a TID range scan of the chunk's pages.
    DELETE FROM governance_auditevent
     WHERE ctid >= coalesce(p_lo, '(0,0)'::tid)
       AND ctid < coalesce(p_hi, '(4294967295,0)'::tid)
       AND at < cutoff
       AND target_type NOT IN ('retention_policy', 'retention.retentionpolicy')
       AND id <> ALL (coalesce(p_keep_ids, '{}'::bigint[]));
    GET DIAGNOSTICS removed = ROW_COUNT;
    PERFORM set_config('governance.audit_purge', '', true);
    RETURN removed;
END;
$$;

CREATE OR REPLACE FUNCTION audit_purge_subject(p_subject_key text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, {schema}, pg_temp
AS $$
DECLARE
    removed bigint;
BEGIN
    IF coalesce(p_subject_key, '') = '' THEN
        RAISE EXCEPTION 'audit_purge_subject: a subject key is required'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM set_config('governance.audit_purge', 'on', true);
    DELETE FROM governance_auditevent
     WHERE detail -> 'subject_key' = to_jsonb(p_subject_key)
       AND action NOT LIKE 'rights.%%'
       AND target_type NOT IN ('retention_policy', 'retention.retentionpolicy');
    GET DIAGNOSTICS removed = ROW_COUNT;
    PERFORM set_config('governance.audit_purge', '', true);
    RETURN removed;
END;
$$;

-- Only roles granted them may call them (create_app_role grants the app role).
REVOKE EXECUTE ON FUNCTION audit_purge_before(timestamptz, tid, tid, bigint[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION audit_purge_subject(text) FROM PUBLIC;
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite keeps its trigger: no roles to defend against there.
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT quote_ident(current_schema())")
        schema = cursor.fetchone()[0]
    floor = max(0, int(settings.RETENTION_MINIMUM_ACCOUNTABILITY_DAYS))
    schema_editor.execute(GUARD)
    schema_editor.execute(FUNCTIONS.replace("{schema}", schema).replace("{floor}", str(floor)))


def reverse(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        "DROP FUNCTION IF EXISTS audit_purge_before(timestamptz, tid, tid, bigint[]);"
        "DROP FUNCTION IF EXISTS audit_purge_subject(text);"
    )
    schema_editor.execute(OLD_GUARD)


class Migration(migrations.Migration):
    dependencies = [("governance", "0009_signingkey_last_signed_at")]
    operations = [migrations.RunPython(forward, reverse)]
