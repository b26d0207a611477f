"""On PostgreSQL, an owner-owned SECURITY DEFINER function becomes the only way past the
ledger's trigger: ledger_purge_subject(subject_id, reason, removed_elsewhere) removes a
whole subject history (events, states, proof contexts) and writes its tombstone.

The trigger used to let DELETE through whenever a consent_ledgerpurgeguard row was visible,
and the app role may insert rows anywhere. Now it also asks that the deleting statement run
as the table's owner, which the app role only ever is inside this function. SQLite keeps
the guard row (no roles there). See docs/decisions/0002.
"""

from django.db import migrations

GUARD = """
CREATE OR REPLACE FUNCTION consent_ledger_guard() RETURNS trigger AS $$
BEGIN
    -- The flag alone is not enough (any role may set a custom setting): the statement must
    -- also run as the table's owner, i.e. inside ledger_purge_subject (or a session of the
    -- owner itself, who could as well disable the trigger). The flag is read first so that
    -- ordinary statements never pay for the catalog lookup.
    IF TG_OP = 'DELETE'
       AND coalesce(current_setting('consent.ledger_purge', true), '') = 'on'
       AND current_user = (SELECT pg_catalog.pg_get_userbyid(relowner)
                             FROM pg_catalog.pg_class WHERE oid = TG_RELID) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'consent ledger is append-only: %% refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
"""

OLD_GUARD = """
CREATE OR REPLACE FUNCTION consent_ledger_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM consent_ledgerpurgeguard) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'consent ledger is append-only: %% refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
"""

PURGE = """
CREATE OR REPLACE FUNCTION ledger_purge_subject(
    p_subject_id bigint, p_reason text, p_removed_elsewhere jsonb DEFAULT '{}'::jsonb
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, {schema}, pg_temp
AS $$
DECLARE
    s consent_subject%%ROWTYPE;
    events bigint;
    contexts bigint;
    states bigint;
    tombstone bigint;
BEGIN
    IF p_reason IS NULL OR p_reason NOT IN ('expired_history', 'erasure') THEN
        RAISE EXCEPTION 'ledger_purge_subject: unknown reason %%', p_reason
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO s FROM consent_subject WHERE id = p_subject_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger_purge_subject: no subject %%', p_subject_id
            USING ERRCODE = 'no_data_found';
    END IF;
    -- Transaction-local, and undone with the (sub)transaction if anything below fails.
    PERFORM set_config('consent.ledger_purge', 'on', true);
    WITH gone AS (
        DELETE FROM consent_consentevent WHERE subject_id = s.id RETURNING receipt_id
    ), proof AS (
        DELETE FROM consent_consentcontext
        WHERE receipt_id IN (SELECT receipt_id FROM gone) RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM proof) INTO events, contexts;
    PERFORM set_config('consent.ledger_purge', '', true);
    DELETE FROM consent_consentstate WHERE subject_id = s.id;
    GET DIAGNOSTICS states = ROW_COUNT;
    INSERT INTO consent_subjecttombstone
        (subject_key, key_version, namespace, final_chain_hash, last_seq, reason, removed,
         created_at)
    VALUES (
        s.key, s.key_version, s.namespace, s.chain_head, s.last_seq, p_reason,
        jsonb_build_object(
            'consent_events', events, 'consent_states', states, 'consent_contexts', contexts
        ) || coalesce(p_removed_elsewhere, '{}'::jsonb),
        clock_timestamp()
    )
    RETURNING id INTO tombstone;
    RETURN tombstone;
END;
$$;

-- Only roles granted it may call it (create_app_role grants the app role).
REVOKE EXECUTE ON FUNCTION ledger_purge_subject(bigint, text, jsonb) FROM PUBLIC;
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite keeps its guard-row trigger: no roles to defend against there.
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT quote_ident(current_schema())")
        schema = cursor.fetchone()[0]
    schema_editor.execute(GUARD)
    schema_editor.execute(PURGE.replace("{schema}", schema))


def reverse(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("DROP FUNCTION IF EXISTS ledger_purge_subject(bigint, text, jsonb)")
    schema_editor.execute(OLD_GUARD)


class Migration(migrations.Migration):
    dependencies = [("consent", "0006_drop_redundant_indexes")]
    operations = [migrations.RunPython(forward, reverse)]
