-- requires: 0002
-- Change capture: the queue's writers (statement triggers on sources, enqueue_all).
-- Re-applied on every upgrade: only CREATE OR REPLACE objects here. @extschema:vector@ is
-- replaced by the (quoted) schema of the pgvector extension.

-- The statement that queues the rows of `rows_sql` (collection_id, pk, model_version_id,
-- priority, operation). A key already queued gets a higher revision instead of a second item, so
-- a worker embedding it meanwhile knows its text is stale.
CREATE OR REPLACE FUNCTION pyembed._enqueue_sql(rows_sql text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format(
        'INSERT INTO pyembed.queue AS q (collection_id, pk, model_version_id, priority, operation) '
        'SELECT DISTINCT ON (r.collection_id, coalesce(r.model_version_id, 0), r.pk) '
        '       r.collection_id, r.pk, r.model_version_id, r.priority, r.operation '
        'FROM (%s) AS r (collection_id, pk, model_version_id, priority, operation) '
        'ON CONFLICT (collection_id, coalesce(model_version_id, 0), pk) DO UPDATE '
        'SET revision = q.revision + 1, operation = excluded.operation, '
        '    priority = least(q.priority, excluded.priority), enqueued_at = clock_timestamp(), '
        '    attempts = 0, next_attempt_at = clock_timestamp(), last_error = NULL',
        rows_sql)
$$;

-- Whether the current role sees every row of `source`: no row-level security applies to it, or
-- a permissive SELECT policy for it says `true` and no restrictive policy applies. Otherwise a
-- row it cannot find may exist, hidden by a policy.
CREATE OR REPLACE FUNCTION pyembed._sees_every_row(source regclass)
RETURNS boolean
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT NOT row_security_active(source) OR (
        EXISTS (SELECT FROM pg_catalog.pg_policy AS p
                WHERE p.polrelid = source AND p.polpermissive AND p.polcmd IN ('r', '*')
                  AND coalesce(pg_get_expr(p.polqual, p.polrelid), 'true') = 'true'
                  AND (0::oid = ANY (p.polroles) OR EXISTS (
                      SELECT FROM unnest(p.polroles) AS r(oid)
                      WHERE pg_has_role(current_user, r.oid, 'USAGE'))))
        AND NOT EXISTS (SELECT FROM pg_catalog.pg_policy AS p
                        WHERE p.polrelid = source AND NOT p.polpermissive AND p.polcmd IN ('r', '*')
                          AND (0::oid = ANY (p.polroles) OR EXISTS (
                              SELECT FROM unnest(p.polroles) AS r(oid)
                              WHERE pg_has_role(current_user, r.oid, 'USAGE')))))
$$;

-- Queue keys (a jsonb array of key arrays) of a collection for embedding ('upsert': the worker
-- reads the row and decides). SECURITY DEFINER: only pyembed's owner writes the queue; callers
-- read the keys from the source with their own rights (enqueue_all).
CREATE OR REPLACE FUNCTION pyembed._enqueue_keys(collection_id bigint, keys jsonb,
                                                 model_version_id bigint, priority smallint)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections;
    n bigint;
BEGIN
    SELECT * INTO c FROM pyembed.collections AS t WHERE t.id = _enqueue_keys.collection_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'collection id % does not exist', collection_id USING ERRCODE = 'undefined_object';
    END IF;
    IF model_version_id IS NOT NULL
       AND model_version_id IS DISTINCT FROM c.active_version_id
       AND model_version_id IS DISTINCT FROM c.pending_version_id THEN
        RAISE EXCEPTION 'model version % is not live in collection "%"', model_version_id, c.name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jsonb_typeof(keys) IS DISTINCT FROM 'array' OR EXISTS (
        SELECT FROM jsonb_array_elements(keys) AS k(v)
        WHERE jsonb_typeof(k.v) <> 'array' OR jsonb_array_length(k.v) <> cardinality(c.pk_columns)) THEN
        RAISE EXCEPTION 'keys must be a JSON array of %-element key arrays', cardinality(c.pk_columns)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE pyembed._enqueue_sql(
        'SELECT $1, k.v, $2, $3, ''upsert'' FROM jsonb_array_elements($4) AS k(v)')
    USING c.id, model_version_id, coalesce(priority, 0::smallint), keys;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Enqueue every row of the source (registration, backfill, re-embedding after a change). The
-- source is read with the caller's rights, in slices of 10,000 keys.
CREATE OR REPLACE FUNCTION pyembed.enqueue_all(
    collection_name text,
    model_version_id bigint DEFAULT NULL,
    priority smallint DEFAULT 0)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed.collection(collection_name);
    source regclass := to_regclass(pyembed._qualified_source(c));
    keys jsonb;
    n bigint := 0;
BEGIN
    IF source IS NULL THEN
        RAISE EXCEPTION 'the source table % of collection "%" does not exist',
            pyembed._qualified_source(c), c.name USING ERRCODE = 'undefined_table';
    END IF;
    -- Rows hidden from the caller would never be queued: the collection would miss them.
    IF NOT pyembed._sees_every_row(source) THEN
        RAISE EXCEPTION 'row-level security on % hides rows from role %: queueing every row of '
                        'collection "%" would miss them', source, current_user, c.name
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('run this as a role with BYPASSRLS or the table''s owner, or add '
                                'CREATE POLICY ... ON %s FOR SELECT TO %I USING (true)',
                                source, current_user);
    END IF;
    FOR keys IN EXECUTE format(
        'SELECT jsonb_agg(t.pk) FROM (SELECT %s AS pk, (row_number() OVER () - 1) / 10000 AS slice '
        'FROM %s AS s) AS t GROUP BY t.slice', pyembed._pk_sql(c, 's'), source)
    LOOP
        n := n + pyembed._enqueue_keys(c.id, keys, model_version_id, priority);
    END LOOP;
    PERFORM pg_notify(pyembed._work_channel(), c.name);
    RETURN n;
END
$$;

-- The collection whose capture trigger fired, checked: the firing table must be the collection's
-- source (a trigger attached elsewhere with another collection's id is refused), and its key and
-- text columns must still be of types whose conversions the table's owner cannot redefine (the
-- capture functions read them as pyembed's owner). NULL when the collection is gone.
CREATE OR REPLACE FUNCTION pyembed._capture_target(collection_id text, relid oid,
                                                   table_schema name, table_name name)
RETURNS pyembed.collections
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections;
    unsafe text;
BEGIN
    SELECT * INTO c FROM pyembed.collections AS t WHERE t.id = collection_id::bigint;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF (c.source_schema, c.source_table) IS DISTINCT FROM (table_schema::text, table_name::text) THEN
        RAISE EXCEPTION 'pyembed capture trigger on %.% names collection "%", whose source is %',
            quote_ident(table_schema), quote_ident(table_name), c.name, pyembed._qualified_source(c)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'only pyembed.create_collection attaches capture triggers; if the source '
                         'was renamed, rename it back or re-create the collection';
    END IF;
    unsafe := pyembed._unsafe_columns(relid, c.pk_columns || coalesce(c.text_columns,
                                                       pyembed._template_columns(c.text_template)));
    IF unsafe IS NOT NULL THEN
        RAISE EXCEPTION 'collection "%" cannot capture changes: column(s) % of % are of types '
                        'pyembed does not read', c.name, unsafe, pyembed._qualified_source(c)
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'keys and embedded text must be built-in types (or domains over them)';
    END IF;
    RETURN c;
END
$$;

-- Statement-level change capture (one per statement, not per row). SECURITY DEFINER because
-- applications that write source rows must enqueue work without being granted pyembed.queue;
-- the function only ever inserts keys of the rows the statement changed, of the collection
-- whose source fired it.
-- What an UPDATE must change to queue a row: its text, and the adopted vector column when the
-- collection copies the application's embeddings (create_collection(..., embedding_column)).
CREATE OR REPLACE FUNCTION pyembed._change_sql(c pyembed.collections, alias text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN c.settings ? 'embedding_column'
                THEN format('(%s, %I.%I::text)', pyembed._text_sql(c, alias), alias,
                            c.settings->>'embedding_column')
                ELSE pyembed._text_sql(c, alias) END
$$;

CREATE OR REPLACE FUNCTION pyembed._capture_changes()
RETURNS trigger
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed._capture_target(TG_ARGV[0], TG_RELID, TG_TABLE_SCHEMA,
                                                      TG_TABLE_NAME);
    changed text;
BEGIN
    IF c.id IS NULL THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        changed := format('SELECT %s AS pk, ''upsert'' AS op FROM new_rows AS n',
                          pyembed._pk_sql(c, 'n'));
    ELSIF TG_OP = 'DELETE' THEN
        changed := format('SELECT %s AS pk, ''delete'' AS op FROM old_rows AS o',
                          pyembed._pk_sql(c, 'o'));
    ELSE
        -- Only rows whose embedded text (or adopted vector) changed, plus both sides of a key
        -- change.
        changed := format(
            'SELECT coalesce(nk.pk, ok.pk) AS pk, '
            '       CASE WHEN nk.pk IS NULL THEN ''delete'' ELSE ''upsert'' END AS op '
            'FROM (SELECT %1$s AS pk, %2$s AS body FROM new_rows AS n) AS nk '
            'FULL JOIN (SELECT %3$s AS pk, %4$s AS body FROM old_rows AS o) AS ok '
            '  ON nk.pk = ok.pk '
            'WHERE nk.pk IS NULL OR ok.pk IS NULL OR nk.body IS DISTINCT FROM ok.body',
            pyembed._pk_sql(c, 'n'), pyembed._change_sql(c, 'n'),
            pyembed._pk_sql(c, 'o'), pyembed._change_sql(c, 'o'));
    END IF;
    EXECUTE pyembed._enqueue_sql(format(
        'SELECT $1, changed.pk, NULL::bigint, 0::smallint, changed.op FROM (%s) AS changed',
        changed))
    USING c.id;
    PERFORM pg_notify(pyembed._work_channel(), c.name);
    RETURN NULL;
END
$$;

-- TRUNCATE of the source empties the collection's stores and its pending work.
-- SECURITY DEFINER for the same reason as _capture_changes, with the same check.
CREATE OR REPLACE FUNCTION pyembed._capture_truncate()
RETURNS trigger
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed._capture_target(TG_ARGV[0], TG_RELID, TG_TABLE_SCHEMA,
                                                      TG_TABLE_NAME);
    version_id bigint;
BEGIN
    IF c.id IS NULL THEN
        RETURN NULL;
    END IF;
    DELETE FROM pyembed.queue WHERE collection_id = c.id;
    FOREACH version_id IN ARRAY array_remove(ARRAY[c.active_version_id, c.pending_version_id], NULL)
    LOOP
        EXECUTE format('TRUNCATE %s', pyembed.store_table(c, version_id));
    END LOOP;
    RETURN NULL;
END
$$;
