-- requires: 0002
-- Collections: registering a source table, capturing its changes, and the store tables.
-- Re-applied on every upgrade: only CREATE OR REPLACE objects here. @extschema:vector@ is
-- replaced by the (quoted) schema of the pgvector extension.

-- The role a SECURITY DEFINER function acts for: the session's SET ROLE, else its login.
-- (Inside such a function current_user is the owner; a caller can only SET ROLE to roles it is
-- a member of, so this cannot name a role the session may not act as.)
CREATE OR REPLACE FUNCTION pyembed._caller()
RETURNS name
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN current_setting('role') = 'none' THEN session_user
                ELSE current_setting('role')::name END
$$;

-- Columns of `relid` among `columns` whose type could run a table owner's code when pyembed
-- reads them as another role (a cast to text or json defined by the type's owner): types that
-- are not built in, unless they are domains over built-in types. NULL when all are safe.
CREATE OR REPLACE FUNCTION pyembed._unsafe_columns(relid oid, columns text[])
RETURNS text
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(format('%I (%s)', a.attname, format_type(a.atttypid, a.atttypmod)), ', ')
    FROM pg_catalog.pg_attribute AS a
    JOIN pg_catalog.pg_type AS t ON t.oid = a.atttypid
    WHERE a.attrelid = relid AND a.attname = ANY (columns) AND a.attnum > 0
      AND NOT a.attisdropped
      AND t.oid >= 16384 AND NOT (t.typtype = 'd' AND t.typbasetype < 16384)
$$;

-- The collection row by name, or a clear error naming the known ones.
CREATE OR REPLACE FUNCTION pyembed.collection(collection_name text)
RETURNS pyembed.collections
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections;
BEGIN
    SELECT * INTO c FROM pyembed.collections WHERE name = collection_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'collection "%" does not exist', collection_name
            USING ERRCODE = 'undefined_object',
                  HINT = 'known collections: ' || coalesce(
                      (SELECT string_agg(name, ', ' ORDER BY name) FROM pyembed.collections),
                      'none; create one with pyembed.create_collection(name, source)');
    END IF;
    RETURN c;
END
$$;

-- The collection row, locked until the end of the transaction: two switches, flips or rollbacks
-- of one collection run one after the other. A clear error for an unknown name.
CREATE OR REPLACE FUNCTION pyembed._lock_collection(collection_name text)
RETURNS pyembed.collections
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections;
BEGIN
    SELECT * INTO c FROM pyembed.collections WHERE name = collection_name FOR UPDATE;
    IF NOT FOUND THEN
        c := pyembed.collection(collection_name);  -- raises the usual clear error
    END IF;
    RETURN c;
END
$$;

-- The store table of a collection for a model version: pyembed_store.<name>_v<version id>.
CREATE OR REPLACE FUNCTION pyembed.store_table(c pyembed.collections, version_id bigint)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('%I.%I', 'pyembed_store', c.name || '_v' || version_id)
$$;

CREATE OR REPLACE FUNCTION pyembed._qualified_source(c pyembed.collections)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('%I.%I', c.source_schema, c.source_table)
$$;

-- The key columns of a collection's source as SQL, e.g. "id", "lang" (for USING and lists).
CREATE OR REPLACE FUNCTION pyembed._key_columns(c pyembed.collections)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(format('%I', col), ', ' ORDER BY ord)
    FROM unnest(c.pk_columns) WITH ORDINALITY AS k(col, ord)
$$;

-- SQL for a row's key as a jsonb array, e.g. jsonb_build_array(r."id").
CREATE OR REPLACE FUNCTION pyembed._pk_sql(c pyembed.collections, alias text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('jsonb_build_array(%s)',
                  string_agg(format('%I.%I', alias, col), ', ' ORDER BY ord))
    FROM unnest(c.pk_columns) WITH ORDINALITY AS k(col, ord)
$$;

-- SQL matching rows of `alias` whose key is in the jsonb array of keys `keys_sql`.
CREATE OR REPLACE FUNCTION pyembed._pk_match_sql(c pyembed.collections, alias text, keys_sql text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('(%s) IN (SELECT %s FROM jsonb_array_elements(%s) AS key(v))',
                  string_agg(format('%I.%I', alias, col), ', ' ORDER BY ord),
                  string_agg(format('(key.v->>%s)::%s', ord - 1, typ), ', ' ORDER BY ord),
                  keys_sql)
    FROM unnest(c.pk_columns, c.pk_types) WITH ORDINALITY AS k(col, typ, ord)
$$;

-- The column names a template's {placeholders} name, in order.
CREATE OR REPLACE FUNCTION pyembed._template_columns(template text)
RETURNS text[]
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(m[1]), '{}')
    FROM regexp_matches(template, '\{([A-Za-z_][A-Za-z0-9_$ ]*)\}', 'g') AS m
$$;

-- SQL for the text to embed of a row: its text columns joined by blank lines, or the template
-- with {column} placeholders filled in. NULL when every column that feeds it is NULL.
CREATE OR REPLACE FUNCTION pyembed._text_sql(c pyembed.collections, alias text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parts text[] := '{}';
    cols text[] := '{}';
    piece text;
    rest text;
    m text[];
BEGIN
    IF c.text_columns IS NOT NULL THEN
        SELECT array_agg(format('%I.%I::text', alias, col) ORDER BY ord)
          INTO cols
          FROM unnest(c.text_columns) WITH ORDINALITY AS t(col, ord);
        RETURN format('nullif(concat_ws(E''\n\n'', %s), '''')', array_to_string(cols, ', '));
    END IF;
    rest := c.text_template;
    LOOP
        m := regexp_match(rest, '^(.*?)\{([A-Za-z_][A-Za-z0-9_$ ]*)\}(.*)$', 's');
        EXIT WHEN m IS NULL;
        IF m[1] <> '' THEN
            parts := parts || quote_literal(m[1]);
        END IF;
        piece := format('%I.%I::text', alias, m[2]);
        parts := parts || piece;
        cols := cols || piece;
        rest := m[3];
    END LOOP;
    IF rest <> '' THEN
        parts := parts || quote_literal(rest);
    END IF;
    RETURN format('CASE WHEN num_nonnulls(%s) = 0 THEN NULL ELSE nullif(concat(%s), '''') END',
                  array_to_string(cols, ', '), array_to_string(parts, ', '));
END
$$;

-- Create the store table of (collection, version) and the collection's chunk view over it.
CREATE OR REPLACE FUNCTION pyembed._create_store(c pyembed.collections, version_id bigint)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    dims integer;
    vector_type text;
BEGIN
    SELECT m.dimensions INTO dims
    FROM pyembed.model_versions v JOIN pyembed.models m ON m.id = v.model_id
    WHERE v.id = version_id;
    -- HNSW and IVFFlat index at most 2,000 dimensions of vector, 4,000 of halfvec.
    vector_type := CASE WHEN dims > 2000 THEN format('@extschema:vector@.halfvec(%s)', dims)
                        ELSE format('@extschema:vector@.vector(%s)', dims) END;
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS %s (%s, chunk_seq integer NOT NULL, chunk text NOT NULL, '
        'embedding %s, content_hash bytea NOT NULL, '
        'embedded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (%s, chunk_seq))',
        pyembed.store_table(c, version_id),
        (SELECT string_agg(format('%I %s NOT NULL', col, typ), ', ' ORDER BY ord)
           FROM unnest(c.pk_columns, c.pk_types) WITH ORDINALITY AS k(col, typ, ord)),
        vector_type,
        pyembed._key_columns(c));
    EXECUTE format('COMMENT ON TABLE %s IS %L', pyembed.store_table(c, version_id),
                   format('pyembed store of collection %s, model version %s', c.name, version_id));
    -- The tsvector for hybrid search (revision 0007 on).
    IF to_regprocedure('pyembed._create_text_search(pyembed.collections,bigint,boolean)') IS NOT NULL THEN
        PERFORM pyembed._create_text_search(c, version_id, false);
    END IF;
    -- Who may read and write it: decided in 090_grants.sql (revision 0011 on).
    IF to_regprocedure('pyembed._grant_store(pyembed.collections,bigint)') IS NOT NULL THEN
        PERFORM pyembed._grant_store(c, version_id);
    END IF;
END
$$;

-- The view <collection>_chunks: source rows joined with their chunks in the active store.
-- security_invoker (PostgreSQL 15+) makes row-level security of the source and the store apply
-- to readers; without it the view would read as its owner, so older servers do not grant it.
CREATE OR REPLACE FUNCTION pyembed._create_view(c pyembed.collections)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    view_name text := format('%I.%I', 'pyembed_store', c.name || '_chunks');
    options text := CASE WHEN current_setting('server_version_num')::int >= 150000
                         THEN ' WITH (security_invoker = true)' ELSE '' END;
BEGIN
    EXECUTE format('DROP VIEW IF EXISTS %s', view_name);
    IF c.active_version_id IS NULL THEN
        RETURN;
    END IF;
    EXECUTE format(
        'CREATE VIEW %s%s AS SELECT s.*, st.chunk_seq AS pyembed_chunk_seq, '
        'st.chunk AS pyembed_chunk, st.embedding AS pyembed_embedding, '
        'st.embedded_at AS pyembed_embedded_at FROM %s AS s JOIN %s AS st USING (%s)',
        view_name, options, pyembed._qualified_source(c),
        pyembed.store_table(c, c.active_version_id),
        pyembed._key_columns(c));
    EXECUTE format('COMMENT ON VIEW %s IS %L', view_name,
                   format('rows of %s with their chunks and embeddings (collection %s)',
                          pyembed._qualified_source(c), c.name));
    IF to_regprocedure('pyembed._grant_view(pyembed.collections)') IS NOT NULL THEN
        PERFORM pyembed._grant_view(c);
    END IF;
END
$$;

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
    PERFORM pg_notify('pyembed_queue', c.name);
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
        -- Only rows whose embedded text changed, plus both sides of a key change.
        changed := format(
            'SELECT coalesce(nk.pk, ok.pk) AS pk, '
            '       CASE WHEN nk.pk IS NULL THEN ''delete'' ELSE ''upsert'' END AS op '
            'FROM (SELECT %1$s AS pk, %2$s AS body FROM new_rows AS n) AS nk '
            'FULL JOIN (SELECT %3$s AS pk, %4$s AS body FROM old_rows AS o) AS ok '
            '  ON nk.pk = ok.pk '
            'WHERE nk.pk IS NULL OR ok.pk IS NULL OR nk.body IS DISTINCT FROM ok.body',
            pyembed._pk_sql(c, 'n'), pyembed._text_sql(c, 'n'),
            pyembed._pk_sql(c, 'o'), pyembed._text_sql(c, 'o'));
    END IF;
    EXECUTE pyembed._enqueue_sql(format(
        'SELECT $1, changed.pk, NULL::bigint, 0::smallint, changed.op FROM (%s) AS changed',
        changed))
    USING c.id;
    PERFORM pg_notify('pyembed_queue', c.name);
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

-- Validate index settings: the method, index_options (build parameters m, ef_construction for
-- HNSW and lists for IVFFlat, and search defaults ef_search and probes, all positive integers)
-- and auto_index_min_rows (0 or NULL: no automatic build).
CREATE OR REPLACE FUNCTION pyembed._check_index_settings(method text, options jsonb,
                                                        auto_index_min_rows bigint)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bad text;
BEGIN
    IF method IS NULL OR method NOT IN ('hnsw', 'ivfflat', 'none') THEN
        RAISE EXCEPTION 'unknown index method "%"', method
            USING ERRCODE = 'invalid_parameter_value', HINT = 'use hnsw, ivfflat or none';
    END IF;
    IF jsonb_typeof(options) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'index_options must be a JSON object' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'e.g. ''{"m": 16, "ef_construction": 64, "ef_search": 80}''';
    END IF;
    SELECT string_agg(format('%s = %s', o.key, o.value), ', ') INTO bad
    FROM jsonb_each(options) AS o
    WHERE o.key NOT IN ('m', 'ef_construction', 'lists', 'ef_search', 'probes')
       OR jsonb_typeof(o.value) <> 'number' OR o.value::text !~ '^[1-9][0-9]{0,5}$';
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'index_options not understood: %', bad
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'known options (positive integers): m, ef_construction, lists, ef_search, probes';
    END IF;
    IF auto_index_min_rows < 0 THEN
        RAISE EXCEPTION 'auto_index_min_rows must not be negative'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'give a row count, or 0 for none';
    END IF;
END
$$;

-- Validate a collection's settings: a JSON object of known keys with values of the right kind,
-- so that a bad value is refused where it is written, not by every later search.
CREATE OR REPLACE FUNCTION pyembed._check_settings(settings jsonb)
RETURNS void
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    item record;
    problem text;
BEGIN
    IF jsonb_typeof(settings) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'settings must be a JSON object, not %', coalesce(jsonb_typeof(settings), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'e.g. settings => ''{"log_queries": false, "query_log_retention": "30 days"}''';
    END IF;
    FOR item IN SELECT e.key, e.value FROM jsonb_each(settings) AS e LOOP
        problem := NULL;
        CASE item.key
        WHEN 'log_queries' THEN
            IF jsonb_typeof(item.value) NOT IN ('boolean', 'null') THEN
                problem := 'true or false';
            END IF;
        WHEN 'query_log_retention' THEN
            BEGIN
                IF jsonb_typeof(item.value) = 'string' THEN
                    IF (item.value #>> '{}')::interval <= interval '0' THEN
                        problem := 'a positive interval such as "30 days"';
                    END IF;
                ELSIF jsonb_typeof(item.value) <> 'null' THEN
                    problem := 'a positive interval such as "30 days"';
                END IF;
            EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format OR interval_field_overflow THEN
                problem := 'a positive interval such as "30 days"';
            END;
        WHEN 'text_search_config' THEN
            IF jsonb_typeof(item.value) = 'string' THEN
                BEGIN
                    PERFORM (item.value #>> '{}')::regconfig;
                EXCEPTION WHEN undefined_object OR invalid_name OR syntax_error THEN
                    RAISE EXCEPTION 'text search configuration "%" does not exist', item.value #>> '{}'
                        USING ERRCODE = 'undefined_object',
                              HINT = 'use one of: ' || (SELECT string_agg(cfgname, ', ' ORDER BY cfgname)
                                                        FROM pg_catalog.pg_ts_config);
                END;
            ELSIF jsonb_typeof(item.value) <> 'null' THEN
                problem := 'the name of a text search configuration such as "english"';
            END IF;
        WHEN 'gate_metric' THEN
            IF jsonb_typeof(item.value) NOT IN ('string', 'null')
               OR item.value #>> '{}' !~ '^[a-z][a-z0-9_]*@[1-9][0-9]{0,3}$' THEN
                problem := 'a metric at a cut-off such as "ndcg@10"';
            END IF;
        WHEN 'tenant_setting' THEN
            IF jsonb_typeof(item.value) NOT IN ('string', 'null')
               OR item.value #>> '{}' !~ '^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_.]*$' THEN
                problem := 'the name of a custom setting such as "app.tenant"';
            END IF;
        ELSE
            RAISE EXCEPTION 'unknown collection setting "%"', item.key
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'known settings: log_queries, query_log_retention, text_search_config, '
                             'gate_metric, tenant_setting';
        END CASE;
        IF problem IS NOT NULL THEN
            RAISE EXCEPTION 'collection setting % = % is not valid', item.key, item.value
                USING ERRCODE = 'invalid_parameter_value', HINT = 'give ' || problem;
        END IF;
    END LOOP;
END
$$;

-- Register a collection: validate, write the catalog row, create its store and view.
-- SECURITY DEFINER: the store belongs to pyembed's owner, never to the writer. The caller must be
-- able to read the source and attach triggers to it (create_collection then does, as the caller).
CREATE OR REPLACE FUNCTION pyembed._register_collection(
    collection_name text,
    source regclass,
    text_columns text[],
    template text,
    model text,
    distance text,
    chunk_tokens integer,
    chunk_overlap integer,
    index_method text,
    auto_index_min_rows bigint)
RETURNS pyembed.collections
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller name := pyembed._caller();
    src_schema text;
    src_table text;
    pk_cols text[];
    pk_typs text[];
    all_cols text[];
    missing text;
    m pyembed.models;
    version_id bigint;
    c pyembed.collections;
BEGIN
    IF collection_name IS NULL OR collection_name !~ '^[a-z_][a-z0-9_]{0,39}$' THEN
        RAISE EXCEPTION 'invalid collection name "%"', collection_name
            USING ERRCODE = 'invalid_name',
                  HINT = 'use 1-40 lower-case letters, digits and underscores, starting with a letter';
    END IF;
    IF EXISTS (SELECT FROM pyembed.collections AS t WHERE t.name = collection_name) THEN
        RAISE EXCEPTION 'collection "%" already exists', collection_name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'pick another name, or pyembed.drop_collection(name) first';
    END IF;
    SELECT n.nspname, cl.relname INTO src_schema, src_table
    FROM pg_catalog.pg_class AS cl JOIN pg_catalog.pg_namespace AS n ON n.oid = cl.relnamespace
    WHERE cl.oid = source AND cl.relkind IN ('r', 'p');
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not a table', source
            USING ERRCODE = 'wrong_object_type', HINT = 'collections read from ordinary or partitioned tables';
    END IF;
    IF src_schema IN ('pyembed', 'pyembed_store', 'pg_catalog', 'information_schema') THEN
        RAISE EXCEPTION '% is not an application table', source USING ERRCODE = 'wrong_object_type';
    END IF;
    IF NOT has_table_privilege(caller, source, 'SELECT')
       OR NOT has_table_privilege(caller, source, 'TRIGGER') THEN
        RAISE EXCEPTION 'role % may not register % (it needs SELECT and TRIGGER on it)', caller, source
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('GRANT SELECT, TRIGGER ON %s TO %I, or create the collection as the '
                                'table''s owner', source, caller);
    END IF;
    SELECT array_agg(a.attname::text ORDER BY k.ord), array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord)
      INTO pk_cols, pk_typs
    FROM pg_catalog.pg_index AS i
    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = source AND i.indisprimary;
    IF pk_cols IS NULL THEN
        RAISE EXCEPTION 'table % has no primary key', source
            USING ERRCODE = 'invalid_table_definition',
                  HINT = format('pyembed identifies rows by their primary key: ALTER TABLE %s ADD PRIMARY KEY (...)', source);
    END IF;
    SELECT array_agg(attname::text) INTO all_cols
    FROM pg_catalog.pg_attribute WHERE attrelid = source AND attnum > 0 AND NOT attisdropped;
    IF (text_columns IS NULL) = (template IS NULL) THEN
        RAISE EXCEPTION 'give exactly one of text_columns and template'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'e.g. text_columns => ARRAY[''title'', ''body''] or template => ''{title}: {body}''';
    END IF;
    IF text_columns IS NOT NULL THEN
        IF cardinality(text_columns) = 0 THEN
            RAISE EXCEPTION 'text_columns is empty' USING ERRCODE = 'invalid_parameter_value',
                HINT = 'name the columns whose text is embedded';
        END IF;
        SELECT string_agg(coalesce(col, 'NULL'), ', ') INTO missing FROM unnest(text_columns) AS col
        WHERE col IS NULL OR NOT col = ANY (all_cols);
    ELSE
        -- Braces around anything but a plain column name would be embedded as literal text.
        SELECT string_agg(mm[1], ', ') INTO missing
        FROM regexp_matches(template, '(\{[^{}]*\})', 'g') AS mm
        WHERE mm[1] !~ '^\{[A-Za-z_][A-Za-z0-9_$ ]*\}$';
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'template placeholder(s) % do not name a column', missing
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'placeholders hold a column name of letters, digits, _, $ and spaces; '
                             'for other column names use text_columns';
        END IF;
        IF cardinality(pyembed._template_columns(template)) = 0 THEN
            RAISE EXCEPTION 'template "%" names no column', template
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'put column names in braces, e.g. ''{title}: {body}''';
        END IF;
        SELECT string_agg(col, ', ') INTO missing
        FROM unnest(pyembed._template_columns(template)) AS col
        WHERE NOT col = ANY (all_cols);
    END IF;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'column(s) % do not exist in %', missing, source
            USING ERRCODE = 'undefined_column',
                  HINT = 'columns of ' || source::text || ': ' || array_to_string(all_cols, ', ');
    END IF;
    missing := pyembed._unsafe_columns(source, pk_cols || coalesce(text_columns,
                                                            pyembed._template_columns(template)));
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'column(s) % of % are not of a built-in type', missing, source
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'keys and embedded text must be built-in types or domains over them '
                         '(a type''s owner could redefine how pyembed reads it): cast in a '
                         'generated column and embed that';
    END IF;
    SELECT * INTO m FROM pyembed.models AS t WHERE t.name = model;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model "%" is not registered', model
            USING ERRCODE = 'undefined_object',
                  HINT = 'registered models: ' || coalesce((SELECT string_agg(name, ', ') FROM pyembed.models), 'none')
                         || '; register one with `pyembed models register`';
    END IF;
    SELECT v.id INTO version_id FROM pyembed.model_versions AS v
    WHERE v.model_id = m.id AND v.status = 'ready'
    -- A version fine-tuned for another collection is not a new collection's starting point:
    -- the newest pretrained version is (any ready version when there is none).
    ORDER BY v.kind = 'pretrained' DESC, v.version DESC LIMIT 1;
    IF version_id IS NULL THEN
        RAISE EXCEPTION 'model "%" has no ready version', model USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    PERFORM pyembed._check_index_settings(index_method, '{}', auto_index_min_rows);
    IF distance IS NULL OR distance NOT IN ('cosine', 'l2', 'inner_product') THEN
        RAISE EXCEPTION 'unknown distance "%"', distance
            USING ERRCODE = 'invalid_parameter_value', HINT = 'use cosine, l2 or inner_product';
    END IF;
    chunk_tokens := coalesce(chunk_tokens, m.max_seq_length);
    IF chunk_tokens <= 0 OR chunk_overlap IS NULL OR chunk_overlap < 0 OR chunk_overlap >= chunk_tokens THEN
        RAISE EXCEPTION 'chunk_tokens % with chunk_overlap % cannot work', chunk_tokens, chunk_overlap
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'chunk_tokens must be positive and chunk_overlap between 0 and chunk_tokens - 1';
    END IF;

    INSERT INTO pyembed.collections (name, source_schema, source_table, pk_columns, pk_types,
                                     text_columns, text_template, chunk_tokens, chunk_overlap,
                                     distance, model_id, active_version_id, index_method,
                                     auto_index_min_rows)
    VALUES (collection_name, src_schema, src_table, pk_cols, pk_typs, text_columns, template,
            chunk_tokens, chunk_overlap, distance, m.id, version_id, index_method,
            nullif(auto_index_min_rows, 0))
    RETURNING * INTO c;

    PERFORM pyembed._create_store(c, version_id);
    PERFORM pyembed._create_view(c);
    RETURN c;
END
$$;

-- Register a source table as a collection. Its change-capture triggers are attached with the
-- caller's own rights (TRIGGER on the source), and existing rows queued as the caller reads them.
CREATE OR REPLACE FUNCTION pyembed.create_collection(
    collection_name text,
    source regclass,
    text_columns text[] DEFAULT NULL,
    template text DEFAULT NULL,
    model text DEFAULT 'all-MiniLM-L6-v2',
    distance text DEFAULT 'cosine',
    chunk_tokens integer DEFAULT NULL,
    chunk_overlap integer DEFAULT 32,
    enqueue_existing boolean DEFAULT true,
    index_method text DEFAULT 'hnsw',
    auto_index_min_rows bigint DEFAULT NULL)
RETURNS pyembed.collections
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections;
    event text;
    src_schema name := (SELECT n.nspname FROM pg_catalog.pg_class AS cl
                        JOIN pg_catalog.pg_namespace AS n ON n.oid = cl.relnamespace
                        WHERE cl.oid = source);
BEGIN
    -- The store's row-level security and the chunk view name the source: pyembed's owner must
    -- be able to look it up (USAGE on its schema, nothing more). Grant it when the caller can.
    IF src_schema IS NOT NULL AND to_regrole('pyembed_owner') IS NOT NULL
       AND NOT has_schema_privilege('pyembed_owner', src_schema, 'USAGE') THEN
        BEGIN
            EXECUTE format('GRANT USAGE ON SCHEMA %I TO pyembed_owner', src_schema);
        EXCEPTION WHEN insufficient_privilege THEN
            NULL;  -- said below
        END;
        IF NOT has_schema_privilege('pyembed_owner', src_schema, 'USAGE') THEN
            RAISE EXCEPTION 'pyembed_owner cannot look up tables in schema %', src_schema
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('as the schema''s owner: GRANT USAGE ON SCHEMA %I TO pyembed_owner '
                                    '(it reads nothing there: SELECT stays with your roles)', src_schema);
        END IF;
    END IF;
    c := pyembed._register_collection(collection_name, source, text_columns, template, model,
                                      distance, chunk_tokens, chunk_overlap, index_method,
                                      auto_index_min_rows);
    FOREACH event IN ARRAY ARRAY['insert', 'update', 'delete'] LOOP
        EXECUTE format(
            'CREATE TRIGGER %I AFTER %s ON %s REFERENCING %s FOR EACH STATEMENT '
            'EXECUTE FUNCTION pyembed._capture_changes(%L)',
            'pyembed_' || c.name || '_' || event, upper(event), source,
            CASE event WHEN 'insert' THEN 'NEW TABLE AS new_rows'
                       WHEN 'delete' THEN 'OLD TABLE AS old_rows'
                       ELSE 'OLD TABLE AS old_rows NEW TABLE AS new_rows' END,
            c.id);
    END LOOP;
    EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %s FOR EACH STATEMENT '
                   'EXECUTE FUNCTION pyembed._capture_truncate(%L)',
                   'pyembed_' || c.name || '_truncate', source, c.id);
    IF enqueue_existing THEN
        PERFORM pyembed.enqueue_all(c.name);
    END IF;
    RETURN c;
END
$$;

-- The catalog half of alter_collection. SECURITY DEFINER: writers change collections only
-- through the API, and every value is validated here.
CREATE OR REPLACE FUNCTION pyembed._alter_collection(
    collection_name text,
    chunk_tokens integer,
    chunk_overlap integer,
    index_method text,
    settings jsonb,
    index_options jsonb,
    auto_index_min_rows bigint)
RETURNS pyembed.collections
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed._lock_collection(collection_name);
    new_tokens integer := coalesce(chunk_tokens, c.chunk_tokens);
    new_overlap integer := coalesce(chunk_overlap, c.chunk_overlap);
    version_id bigint;
BEGIN
    IF new_tokens <= 0 OR new_overlap < 0 OR new_overlap >= new_tokens THEN
        RAISE EXCEPTION 'chunk_tokens % with chunk_overlap % cannot work', new_tokens, new_overlap
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'chunk_tokens must be positive and chunk_overlap between 0 and chunk_tokens - 1';
    END IF;
    PERFORM pyembed._check_index_settings(coalesce(index_method, c.index_method),
                                          coalesce(index_options, '{}'), auto_index_min_rows);
    IF settings IS NOT NULL THEN
        PERFORM pyembed._check_settings(settings);
    END IF;
    UPDATE pyembed.collections AS t
    SET chunk_tokens = new_tokens,
        chunk_overlap = new_overlap,
        index_method = coalesce(_alter_collection.index_method, t.index_method),
        index_options = t.index_options || coalesce(_alter_collection.index_options, '{}'::jsonb),
        -- 0 turns automatic builds off; NULL leaves the setting as it is.
        auto_index_min_rows = CASE WHEN _alter_collection.auto_index_min_rows = 0 THEN NULL
            ELSE coalesce(_alter_collection.auto_index_min_rows, t.auto_index_min_rows) END,
        -- A key set to JSON null goes back to its default.
        settings = jsonb_strip_nulls(t.settings || coalesce(_alter_collection.settings, '{}'::jsonb)),
        updated_at = now()
    WHERE t.id = c.id
    RETURNING * INTO c;
    -- Another text search configuration: re-derive the live stores' tsvectors (revision 0007 on).
    IF _alter_collection.settings ? 'text_search_config'
       AND to_regprocedure('pyembed._create_text_search(pyembed.collections,bigint,boolean)') IS NOT NULL THEN
        FOREACH version_id IN ARRAY array_remove(ARRAY[c.active_version_id, c.pending_version_id], NULL)
        LOOP
            PERFORM pyembed._create_text_search(c, version_id, true);
        END LOOP;
    END IF;
    RETURN c;
END
$$;

-- Change how a collection chunks its text, its index settings or its settings; a chunking
-- change re-embeds every row (unchanged rows are recognised by their content hash, which covers
-- the chunk settings).
CREATE OR REPLACE FUNCTION pyembed.alter_collection(
    collection_name text,
    chunk_tokens integer DEFAULT NULL,
    chunk_overlap integer DEFAULT NULL,
    index_method text DEFAULT NULL,
    settings jsonb DEFAULT NULL,
    index_options jsonb DEFAULT NULL,
    auto_index_min_rows bigint DEFAULT NULL)
RETURNS pyembed.collections
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections;
BEGIN
    c := pyembed._alter_collection(collection_name, chunk_tokens, chunk_overlap, index_method,
                                   settings, index_options, auto_index_min_rows);
    IF chunk_tokens IS NOT NULL OR chunk_overlap IS NOT NULL THEN
        PERFORM pyembed.enqueue_all(c.name);
    END IF;
    RETURN c;
END
$$;

-- The catalog half of drop_collection: its view, stores (unless keep_store) and row go.
CREATE OR REPLACE FUNCTION pyembed._unregister_collection(collection_name text, keep_store boolean)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed._lock_collection(collection_name);
    store record;
BEGIN
    EXECUTE format('DROP VIEW IF EXISTS %I.%I', 'pyembed_store', c.name || '_chunks');
    IF NOT coalesce(keep_store, false) THEN
        FOR store IN
            SELECT cl.relname FROM pg_catalog.pg_class AS cl
            WHERE cl.relnamespace = 'pyembed_store'::regnamespace AND cl.relkind = 'r'
              AND cl.relname ~ ('^' || c.name || '_v[0-9]+$')
        LOOP
            EXECUTE format('DROP TABLE %I.%I', 'pyembed_store', store.relname);
        END LOOP;
    END IF;
    DELETE FROM pyembed.collections WHERE id = c.id;
END
$$;

-- Unregister a collection: its triggers, view and pending work go; its store tables go too
-- unless keep_store, in which case a collection re-created with the same name and model reuses
-- them and re-embeds only rows whose text changed. The triggers are removed with the caller's
-- rights (PostgreSQL lets only the source's owner drop them).
CREATE OR REPLACE FUNCTION pyembed.drop_collection(collection_name text, keep_store boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed.collection(collection_name);
    event text;
BEGIN
    IF to_regclass(pyembed._qualified_source(c)) IS NOT NULL THEN
        FOREACH event IN ARRAY ARRAY['insert', 'update', 'delete', 'truncate'] LOOP
            EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', 'pyembed_' || c.name || '_' || event,
                           pyembed._qualified_source(c));
        END LOOP;
    END IF;
    PERFORM pyembed._unregister_collection(c.name, keep_store);
END
$$;

-- The rows of a collection's source for a jsonb array of keys, with the text to embed, read with
-- the caller's (the worker's) rights. A key without a row has row_exists false when the caller
-- sees every row of the source, and NULL when row-level security may hide it: then nobody can
-- tell a hidden row from a deleted one, and the worker must not delete its embeddings.
CREATE OR REPLACE FUNCTION pyembed.source_rows(collection_name text, keys jsonb)
RETURNS TABLE (pk jsonb, body text, row_exists boolean)
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed.collection(collection_name);
    sees_all boolean := pyembed._sees_every_row(pyembed._qualified_source(c)::regclass);
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT k.v, r.body, CASE WHEN r.pk IS NOT NULL THEN true WHEN $2 THEN false END '
        'FROM jsonb_array_elements($1) AS k(v) '
        'LEFT JOIN (SELECT %s AS pk, %s AS body FROM %s AS s WHERE %s) AS r ON r.pk = k.v',
        pyembed._pk_sql(c, 's'), pyembed._text_sql(c, 's'), pyembed._qualified_source(c),
        pyembed._pk_match_sql(c, 's', '$1'))
    USING keys, sees_all;
END
$$;

-- The content hash stored for each key in a store (chunk 0 carries it).
CREATE OR REPLACE FUNCTION pyembed.stored_hashes(collection_name text, version_id bigint, keys jsonb)
RETURNS TABLE (pk jsonb, content_hash bytea)
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed.collection(collection_name);
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT %s, st.content_hash FROM %s AS st WHERE st.chunk_seq = 0 AND %s',
        pyembed._pk_sql(c, 'st'), pyembed.store_table(c, version_id),
        pyembed._pk_match_sql(c, 'st', '$1'))
    USING keys;
END
$$;

-- Replace the chunks of `keys` in a store by those staged in pg_temp.pyembed_chunks
-- (the worker fills it with binary COPY in the same transaction). Returns rows written.
CREATE OR REPLACE FUNCTION pyembed.apply_chunks(collection_name text, version_id bigint, keys jsonb)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed.collection(collection_name);
    store text := pyembed.store_table(c, version_id);
    n bigint;
BEGIN
    EXECUTE format('DELETE FROM %s AS st WHERE %s', store, pyembed._pk_match_sql(c, 'st', '$1'))
    USING keys;
    EXECUTE format(
        'INSERT INTO %s (%s, chunk_seq, chunk, embedding, content_hash) '
        'SELECT %s, s.chunk_seq, s.chunk, s.embedding, s.content_hash '
        'FROM pg_temp.pyembed_chunks AS s WHERE s.version_id = $1',
        store,
        (SELECT string_agg(format('%I', col), ', ' ORDER BY ord)
           FROM unnest(c.pk_columns) WITH ORDINALITY AS k(col, ord)),
        (SELECT string_agg(format('(s.pk->>%s)::%s', ord - 1, typ), ', ' ORDER BY ord)
           FROM unnest(c.pk_types) WITH ORDINALITY AS k(typ, ord)))
    USING version_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Counts for the status view (exact: a full count of the source and the active store).
CREATE OR REPLACE FUNCTION pyembed._collection_counts(
    c pyembed.collections, OUT source_rows bigint, OUT embedded_rows bigint, OUT skipped_rows bigint,
    OUT chunks bigint)
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF to_regclass(pyembed._qualified_source(c)) IS NULL THEN
        RETURN;
    END IF;
    EXECUTE format('SELECT count(*) FROM %s', pyembed._qualified_source(c)) INTO source_rows;
    IF c.active_version_id IS NOT NULL
       AND to_regclass(pyembed.store_table(c, c.active_version_id)) IS NOT NULL THEN
        EXECUTE format('SELECT count(*) FILTER (WHERE chunk_seq = 0 AND embedding IS NOT NULL), '
                       'count(*) FILTER (WHERE chunk_seq = 0 AND embedding IS NULL), '
                       'count(*) FILTER (WHERE embedding IS NOT NULL) FROM %s',
                       pyembed.store_table(c, c.active_version_id))
        INTO embedded_rows, skipped_rows, chunks;
    END IF;
END
$$;

CREATE OR REPLACE VIEW pyembed.collection_status AS
SELECT c.name AS collection,
       format('%I.%I', c.source_schema, c.source_table) AS source,
       counts.source_rows,
       counts.embedded_rows,
       counts.skipped_rows,
       counts.chunks,
       coalesce(q.pending, 0) AS pending,
       coalesce(q.retrying, 0) AS retrying,
       coalesce(f.failed, 0) AS failed,
       now() - q.oldest AS oldest_pending_age,
       m.name || ' v' || av.version AS active_model_version,
       m.name || ' v' || pv.version AS pending_model_version
FROM pyembed.collections AS c
JOIN pyembed.models AS m ON m.id = c.model_id
LEFT JOIN pyembed.model_versions AS av ON av.id = c.active_version_id
LEFT JOIN pyembed.model_versions AS pv ON pv.id = c.pending_version_id
CROSS JOIN LATERAL pyembed._collection_counts(c) AS counts
LEFT JOIN LATERAL (
    SELECT count(*) AS pending, count(*) FILTER (WHERE attempts > 0) AS retrying,
           min(enqueued_at) AS oldest
    FROM pyembed.queue WHERE collection_id = c.id) AS q ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS failed FROM pyembed.failed_items WHERE collection_id = c.id) AS f ON true
-- Only collections whose source the caller may read (counts then follow its row-level security).
WHERE to_regclass(format('%I.%I', c.source_schema, c.source_table)) IS NULL
   OR has_table_privilege(to_regclass(format('%I.%I', c.source_schema, c.source_table)), 'SELECT');
COMMENT ON VIEW pyembed.collection_status IS
    'per collection the caller may read: source rows, embedded, skipped (no text), pending, failed, '
    'oldest pending age, model';
