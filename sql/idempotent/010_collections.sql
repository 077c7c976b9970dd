-- requires: 0002
-- Collections: registering a source table, capturing its changes, and the store tables.
-- Re-applied on every upgrade: only CREATE OR REPLACE objects here. @extschema:vector@ is
-- replaced by the (quoted) schema of the pgvector extension.

-- The collection row by name, or a clear error naming the known ones.
CREATE OR REPLACE FUNCTION pyembed.collection(collection_name text)
RETURNS pyembed.collections
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pyembed, @extschema:vector@
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

-- The store table of a collection for a model version: pyembed_store.<name>_v<version id>.
CREATE OR REPLACE FUNCTION pyembed.store_table(c pyembed.collections, version_id bigint)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog
AS $$
    SELECT format('%I.%I', 'pyembed_store', c.name || '_v' || version_id)
$$;

CREATE OR REPLACE FUNCTION pyembed._qualified_source(c pyembed.collections)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog
AS $$
    SELECT format('%I.%I', c.source_schema, c.source_table)
$$;

-- The key columns of a collection's source as SQL, e.g. "id", "lang" (for USING and lists).
CREATE OR REPLACE FUNCTION pyembed._key_columns(c pyembed.collections)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog
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
SET search_path = pg_catalog
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
SET search_path = pg_catalog
AS $$
    SELECT format('(%s) IN (SELECT %s FROM jsonb_array_elements(%s) AS key(v))',
                  string_agg(format('%I.%I', alias, col), ', ' ORDER BY ord),
                  string_agg(format('(key.v->>%s)::%s', ord - 1, typ), ', ' ORDER BY ord),
                  keys_sql)
    FROM unnest(c.pk_columns, c.pk_types) WITH ORDINALITY AS k(col, typ, ord)
$$;

-- SQL for the text to embed of a row: its text columns joined by blank lines, or the template
-- with {column} placeholders filled in. NULL when every column that feeds it is NULL.
CREATE OR REPLACE FUNCTION pyembed._text_sql(c pyembed.collections, alias text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog
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
SET search_path = pg_catalog, pyembed, @extschema:vector@
AS $$
DECLARE
    dims integer;
    vector_type text;
BEGIN
    SELECT m.dimensions INTO dims
    FROM pyembed.model_versions v JOIN pyembed.models m ON m.id = v.model_id
    WHERE v.id = version_id;
    -- HNSW and IVFFlat index at most 2,000 dimensions of vector, 4,000 of halfvec.
    vector_type := CASE WHEN dims > 2000 THEN format('halfvec(%s)', dims)
                        ELSE format('vector(%s)', dims) END;
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
    -- Readers search it, workers fill it (the roles exist from revision 0006 on).
    IF to_regrole('pyembed_reader') IS NOT NULL THEN
        EXECUTE format('GRANT SELECT ON %s TO pyembed_reader', pyembed.store_table(c, version_id));
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO pyembed_worker',
                       pyembed.store_table(c, version_id));
    END IF;
END
$$;

-- The view <collection>_chunks: source rows joined with their chunks in the active store.
-- security_invoker (PostgreSQL 15+) makes row-level security of the source apply to readers.
CREATE OR REPLACE FUNCTION pyembed._create_view(c pyembed.collections)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pyembed, @extschema:vector@
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
    IF to_regrole('pyembed_reader') IS NOT NULL THEN
        EXECUTE format('GRANT SELECT ON %s TO pyembed_reader', view_name);
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
SET search_path = pg_catalog
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

-- Enqueue every row of the source (registration, backfill, re-embedding after a change).
CREATE OR REPLACE FUNCTION pyembed.enqueue_all(
    collection_name text,
    model_version_id bigint DEFAULT NULL,
    priority smallint DEFAULT 0)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pyembed, @extschema:vector@
AS $$
DECLARE
    c pyembed.collections := pyembed.collection(collection_name);
    n bigint;
BEGIN
    EXECUTE pyembed._enqueue_sql(format(
        'SELECT $1, %s, $2, $3, ''upsert'' FROM %s AS s',
        pyembed._pk_sql(c, 's'), pyembed._qualified_source(c)))
    USING c.id, model_version_id, priority;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM pg_notify('pyembed_queue', c.name);
    RETURN n;
END
$$;

-- Statement-level change capture (one per statement, not per row). SECURITY DEFINER because
-- applications that write source rows must enqueue work without being granted pyembed.queue;
-- the function only ever inserts keys of the rows the statement changed.
CREATE OR REPLACE FUNCTION pyembed._capture_changes()
RETURNS trigger
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pyembed, @extschema:vector@
AS $$
DECLARE
    c pyembed.collections;
    changed text;
BEGIN
    SELECT * INTO c FROM pyembed.collections WHERE id = TG_ARGV[0]::bigint;
    IF NOT FOUND THEN
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
-- SECURITY DEFINER for the same reason as _capture_changes: the truncating role owns the
-- source, not pyembed's stores.
CREATE OR REPLACE FUNCTION pyembed._capture_truncate()
RETURNS trigger
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pyembed, @extschema:vector@
AS $$
DECLARE
    c pyembed.collections;
    version_id bigint;
BEGIN
    SELECT * INTO c FROM pyembed.collections WHERE id = TG_ARGV[0]::bigint;
    IF NOT FOUND THEN
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
SET search_path = pg_catalog
AS $$
DECLARE
    bad text;
BEGIN
    IF method IS NULL OR method NOT IN ('hnsw', 'ivfflat', 'none') THEN
        RAISE EXCEPTION 'unknown index method "%"', method
            USING ERRCODE = 'invalid_parameter_value', HINT = 'use hnsw, ivfflat or none';
    END IF;
    IF jsonb_typeof(options) <> 'object' THEN
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
SET search_path = pg_catalog, pyembed, @extschema:vector@
AS $$
DECLARE
    src_schema text;
    src_table text;
    pk_cols text[];
    pk_typs text[];
    all_cols text[];
    missing text;
    m pyembed.models;
    version_id bigint;
    c pyembed.collections;
    event text;
BEGIN
    IF collection_name IS NULL OR collection_name !~ '^[a-z_][a-z0-9_]{0,39}$' THEN
        RAISE EXCEPTION 'invalid collection name "%"', collection_name
            USING ERRCODE = 'invalid_name',
                  HINT = 'use 1-40 lower-case letters, digits and underscores, starting with a letter';
    END IF;
    IF EXISTS (SELECT FROM pyembed.collections WHERE name = collection_name) THEN
        RAISE EXCEPTION 'collection "%" already exists', collection_name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'pick another name, or pyembed.drop_collection(name) first';
    END IF;
    SELECT n.nspname, cl.relname INTO src_schema, src_table
    FROM pg_class cl JOIN pg_namespace n ON n.oid = cl.relnamespace
    WHERE cl.oid = source AND cl.relkind IN ('r', 'p');
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not a table', source
            USING ERRCODE = 'wrong_object_type', HINT = 'collections read from ordinary or partitioned tables';
    END IF;
    SELECT array_agg(a.attname::text ORDER BY k.ord), array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord)
      INTO pk_cols, pk_typs
    FROM pg_index i
    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = source AND i.indisprimary;
    IF pk_cols IS NULL THEN
        RAISE EXCEPTION 'table % has no primary key', source
            USING ERRCODE = 'invalid_table_definition',
                  HINT = format('pyembed identifies rows by their primary key: ALTER TABLE %s ADD PRIMARY KEY (...)', source);
    END IF;
    SELECT array_agg(attname::text) INTO all_cols
    FROM pg_attribute WHERE attrelid = source AND attnum > 0 AND NOT attisdropped;
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
        SELECT string_agg(col, ', ') INTO missing FROM unnest(text_columns) AS col
        WHERE col IS NULL OR NOT col = ANY (all_cols);
    ELSE
        SELECT string_agg(mm[1], ', ') INTO missing
        FROM regexp_matches(template, '\{([A-Za-z_][A-Za-z0-9_$ ]*)\}', 'g') AS mm
        WHERE NOT mm[1] = ANY (all_cols);
        IF template !~ '\{[A-Za-z_][A-Za-z0-9_$ ]*\}' THEN
            RAISE EXCEPTION 'template "%" names no column', template
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'put column names in braces, e.g. ''{title}: {body}''';
        END IF;
    END IF;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'column(s) % do not exist in %', missing, source
            USING ERRCODE = 'undefined_column',
                  HINT = 'columns of ' || source::text || ': ' || array_to_string(all_cols, ', ');
    END IF;
    SELECT * INTO m FROM pyembed.models WHERE name = model;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model "%" is not registered', model
            USING ERRCODE = 'undefined_object',
                  HINT = 'registered models: ' || coalesce((SELECT string_agg(name, ', ') FROM pyembed.models), 'none')
                         || '; register one with `pyembed models register`';
    END IF;
    SELECT v.id INTO version_id FROM pyembed.model_versions v
    WHERE v.model_id = m.id AND v.status = 'ready'
    -- A version fine-tuned for another collection is not a new collection's starting point:
    -- the newest pretrained version is (any ready version when there is none).
    ORDER BY v.kind = 'pretrained' DESC, v.version DESC LIMIT 1;
    IF version_id IS NULL THEN
        RAISE EXCEPTION 'model "%" has no ready version', model USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    PERFORM pyembed._check_index_settings(index_method, '{}', auto_index_min_rows);
    IF distance NOT IN ('cosine', 'l2', 'inner_product') THEN
        RAISE EXCEPTION 'unknown distance "%"', distance
            USING ERRCODE = 'invalid_parameter_value', HINT = 'use cosine, l2 or inner_product';
    END IF;
    chunk_tokens := coalesce(chunk_tokens, m.max_seq_length);
    IF chunk_tokens <= 0 OR chunk_overlap < 0 OR chunk_overlap >= chunk_tokens THEN
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

-- Change how a collection chunks its text; every row is re-embedded (unchanged rows are
-- recognised by their content hash, which covers the chunk settings).
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
SET search_path = pg_catalog, pyembed, @extschema:vector@
AS $$
DECLARE
    c pyembed.collections := pyembed.collection(collection_name);
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
    UPDATE pyembed.collections AS t
    SET chunk_tokens = new_tokens,
        chunk_overlap = new_overlap,
        index_method = coalesce(alter_collection.index_method, t.index_method),
        index_options = t.index_options || coalesce(alter_collection.index_options, '{}'::jsonb),
        -- 0 turns automatic builds off; NULL leaves the setting as it is.
        auto_index_min_rows = CASE WHEN alter_collection.auto_index_min_rows = 0 THEN NULL
            ELSE coalesce(alter_collection.auto_index_min_rows, t.auto_index_min_rows) END,
        settings = t.settings || coalesce(alter_collection.settings, '{}'::jsonb),
        updated_at = now()
    WHERE t.id = c.id
    RETURNING * INTO c;
    IF chunk_tokens IS NOT NULL OR chunk_overlap IS NOT NULL THEN
        PERFORM pyembed.enqueue_all(c.name);
    END IF;
    -- Another text search configuration: re-derive the live stores' tsvectors (revision 0007 on).
    IF alter_collection.settings ? 'text_search_config'
       AND to_regprocedure('pyembed._create_text_search(pyembed.collections,bigint,boolean)') IS NOT NULL THEN
        FOREACH version_id IN ARRAY array_remove(ARRAY[c.active_version_id, c.pending_version_id], NULL)
        LOOP
            PERFORM pyembed._create_text_search(c, version_id, true);
        END LOOP;
    END IF;
    RETURN c;
END
$$;

-- Unregister a collection: its triggers, view and pending work go; its store tables go too
-- unless keep_store, in which case a collection re-created with the same name and model reuses
-- them and re-embeds only rows whose text changed.
CREATE OR REPLACE FUNCTION pyembed.drop_collection(collection_name text, keep_store boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pyembed, @extschema:vector@
AS $$
DECLARE
    c pyembed.collections := pyembed.collection(collection_name);
    event text;
    store record;
BEGIN
    IF to_regclass(pyembed._qualified_source(c)) IS NOT NULL THEN
        FOREACH event IN ARRAY ARRAY['insert', 'update', 'delete', 'truncate'] LOOP
            EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', 'pyembed_' || c.name || '_' || event,
                           pyembed._qualified_source(c));
        END LOOP;
    END IF;
    EXECUTE format('DROP VIEW IF EXISTS %I.%I', 'pyembed_store', c.name || '_chunks');
    IF NOT keep_store THEN
        FOR store IN
            SELECT cl.relname FROM pg_class cl
            WHERE cl.relnamespace = 'pyembed_store'::regnamespace AND cl.relkind = 'r'
              AND cl.relname ~ ('^' || c.name || '_v[0-9]+$')
        LOOP
            EXECUTE format('DROP TABLE %I.%I', 'pyembed_store', store.relname);
        END LOOP;
    END IF;
    DELETE FROM pyembed.collections WHERE id = c.id;
END
$$;

-- The rows of a collection's source for a jsonb array of keys, with the text to embed.
-- Keys without a row (deleted meanwhile) are returned with exists = false.
CREATE OR REPLACE FUNCTION pyembed.source_rows(collection_name text, keys jsonb)
RETURNS TABLE (pk jsonb, body text, row_exists boolean)
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pyembed, @extschema:vector@
AS $$
DECLARE
    c pyembed.collections := pyembed.collection(collection_name);
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT k.v, r.body, r.pk IS NOT NULL FROM jsonb_array_elements($1) AS k(v) '
        'LEFT JOIN (SELECT %s AS pk, %s AS body FROM %s AS s WHERE %s) AS r ON r.pk = k.v',
        pyembed._pk_sql(c, 's'), pyembed._text_sql(c, 's'), pyembed._qualified_source(c),
        pyembed._pk_match_sql(c, 's', '$1'))
    USING keys;
END
$$;

-- The content hash stored for each key in a store (chunk 0 carries it).
CREATE OR REPLACE FUNCTION pyembed.stored_hashes(collection_name text, version_id bigint, keys jsonb)
RETURNS TABLE (pk jsonb, content_hash bytea)
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pyembed, @extschema:vector@
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
SET search_path = pg_catalog, pyembed, @extschema:vector@
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
SET search_path = pg_catalog, pyembed, @extschema:vector@
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
    SELECT count(*) AS failed FROM pyembed.failed_items WHERE collection_id = c.id) AS f ON true;
COMMENT ON VIEW pyembed.collection_status IS
    'per collection: source rows, embedded, skipped (no text), pending, failed, oldest pending age, model';
