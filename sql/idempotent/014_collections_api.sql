-- requires: 0002
-- The collections API: create_collection, alter_collection, drop_collection and their checks.
-- Re-applied on every upgrade: only CREATE OR REPLACE objects here. @extschema:vector@ is
-- replaced by the (quoted) schema of the pgvector extension.

-- Validate index settings: the method, index_options (build parameters m, ef_construction for
-- HNSW and lists for IVFFlat, search defaults ef_search, probes and rerank, all positive
-- integers, and storage: vector, halfvec or binary) and auto_index_min_rows (0 or NULL: no
-- automatic build).
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
    WHERE CASE o.key
          WHEN 'storage' THEN jsonb_typeof(o.value) <> 'string'
                              OR o.value #>> '{}' NOT IN ('vector', 'halfvec', 'binary')
          WHEN 'rerank' THEN jsonb_typeof(o.value) <> 'number' OR o.value::text !~ '^[1-9][0-9]{0,2}$'
          ELSE o.key NOT IN ('m', 'ef_construction', 'lists', 'ef_search', 'probes')
               OR jsonb_typeof(o.value) <> 'number' OR o.value::text !~ '^[1-9][0-9]{0,5}$' END;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'index_options not understood: %', bad
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'known options: m, ef_construction, lists, ef_search, probes (positive '
                         'integers), rerank (1-999) and storage ("vector", "halfvec" or "binary")';
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
        WHEN 'log_queries', 'log_synchronous_commit' THEN
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
        WHEN 'gate_p_value' THEN
            IF (CASE jsonb_typeof(item.value)
                    WHEN 'null' THEN false
                    WHEN 'number' THEN NOT ((item.value #>> '{}')::float8 > 0
                                            AND (item.value #>> '{}')::float8 <= 1)
                    ELSE true END) THEN
                problem := 'a p-value above 0 and at most 1, such as 0.05 (1: no significance needed)';
            END IF;
        WHEN 'gate_mode' THEN
            IF jsonb_typeof(item.value) NOT IN ('string', 'null')
               OR item.value #>> '{}' NOT IN ('exact', 'reranked') THEN
                problem := '"exact" (the model alone) or "reranked" (with the collection''s reranker)';
            END IF;
        WHEN 'reranker' THEN
            IF jsonb_typeof(item.value) NOT IN ('string', 'null')
               OR item.value #>> '{}' !~ '^[^[:space:][:cntrl:]]{1,200}$' THEN
                problem := 'a registered reranker: its name, NAME@N or a version id';
            END IF;
        WHEN 'tenant_setting' THEN
            IF jsonb_typeof(item.value) NOT IN ('string', 'null')
               OR item.value #>> '{}' !~ '^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_.]*$' THEN
                problem := 'the name of a custom setting such as "app.tenant"';
            END IF;
        WHEN 'embedding_column', 'adopted_version_id' THEN
            RAISE EXCEPTION 'collection setting % is set by create_collection only', item.key
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'a collection adopts an application''s vector column when it is '
                             'created: create_collection(..., embedding_column => ''embedding'')';
        ELSE
            RAISE EXCEPTION 'unknown collection setting "%"', item.key
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'known settings: log_queries, log_synchronous_commit, '
                             'query_log_retention, text_search_config, gate_metric, gate_mode, '
                             'gate_p_value, reranker, tenant_setting';
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
    auto_index_min_rows bigint,
    index_options jsonb)
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
    wanted integer;
    version_id bigint;
    c pyembed.collections;
BEGIN
    index_options := nullif(index_options, 'null'::jsonb);  -- JSON null: none given
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
    IF NOT FOUND AND model ~ '@[0-9]{1,9}$' THEN  -- MODEL@N: that version, e.g. a converted one
        wanted := substring(model FROM '@([0-9]+)$')::integer;
        SELECT * INTO m FROM pyembed.models AS t WHERE t.name = regexp_replace(model, '@[0-9]+$', '');
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model "%" is not registered', model
            USING ERRCODE = 'undefined_object',
                  HINT = 'registered models: ' || coalesce((SELECT string_agg(name, ', ') FROM pyembed.models), 'none')
                         || '; register one with `pyembed models register`';
    END IF;
    -- As JSON: models.task exists from 0016 on, and this file applies from 0002.
    IF to_jsonb(m)->>'task' = 'reranker' THEN
        RAISE EXCEPTION 'model "%" is a reranker: it scores (query, text) pairs and embeds nothing', m.name
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'a collection embeds with an embedding model; a reranker orders a search''s results';
    END IF;
    SELECT v.id INTO version_id FROM pyembed.model_versions AS v
    WHERE v.model_id = m.id AND v.status = 'ready' AND (wanted IS NULL OR v.version = wanted)
    -- A version fine-tuned for another collection is not a new collection's starting point:
    -- the newest pretrained version is (any ready version when there is none).
    ORDER BY v.kind = 'pretrained' DESC, v.version DESC LIMIT 1;
    IF version_id IS NULL THEN
        RAISE EXCEPTION 'model "%" has no ready version', model
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = '`pyembed models list` shows the versions and their status';
    END IF;
    PERFORM pyembed._check_index_settings(index_method, coalesce(index_options, '{}'),
                                          auto_index_min_rows);
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
                                     index_options, auto_index_min_rows)
    VALUES (collection_name, src_schema, src_table, pk_cols, pk_typs, text_columns, template,
            chunk_tokens, chunk_overlap, distance, m.id, version_id, index_method,
            coalesce(index_options, '{}'), nullif(auto_index_min_rows, 0))
    RETURNING * INTO c;

    PERFORM pyembed._create_store(c, version_id);
    PERFORM pyembed._create_view(c);
    RETURN c;
END
$$;

-- Adopt the application's own vector column for the collection's active version: the worker
-- copies each row's vector from it into the store instead of embedding the text (a row whose
-- vector is NULL is embedded by the model). Other versions embed as usual, so a switch away from
-- the adopted one re-embeds blue/green. SECURITY DEFINER: it writes the catalog row; the caller
-- must be able to read the column.
CREATE OR REPLACE FUNCTION pyembed._adopt_embeddings(collection_name text, embedding_column text)
RETURNS pyembed.collections
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed._lock_collection(collection_name);
    source regclass := pyembed._qualified_source(c)::regclass;
    column_type text;
    dims integer := (SELECT m.dimensions FROM pyembed.models AS m WHERE m.id = c.model_id);
BEGIN
    SELECT format_type(a.atttypid, a.atttypmod) INTO column_type
    FROM pg_catalog.pg_attribute AS a
    WHERE a.attrelid = source AND a.attname = embedding_column AND a.attnum > 0
      AND NOT a.attisdropped;
    IF column_type IS NULL THEN
        RAISE EXCEPTION 'column "%" does not exist in %', embedding_column, source
            USING ERRCODE = 'undefined_column',
                  HINT = 'name the column that holds the application''s embeddings';
    END IF;
    IF column_type !~ '^(\S+\.)?vector(\([0-9]+\))?$' THEN
        RAISE EXCEPTION 'column "%" of % is %, not a pgvector vector', embedding_column, source,
                        column_type
            USING ERRCODE = 'datatype_mismatch',
                  HINT = 'adopt a vector(n) column (halfvec and sparsevec columns: cast into a '
                         'generated vector column and adopt that)';
    END IF;
    IF column_type ~ '\(' AND substring(column_type FROM '\(([0-9]+)\)')::integer <> dims THEN
        RAISE EXCEPTION 'column "%" of % is %, but model % embeds into % dimensions',
                        embedding_column, source, column_type,
                        (SELECT m.name FROM pyembed.models AS m WHERE m.id = c.model_id), dims
            USING ERRCODE = 'datatype_mismatch',
                  HINT = 'name the model that made these vectors (the one that embeds the '
                         'queries): register it first, e.g. as an endpoint model';
    END IF;
    IF NOT has_column_privilege(pyembed._caller(), source, embedding_column, 'SELECT') THEN
        RAISE EXCEPTION 'role % may not read column % of %', pyembed._caller(), embedding_column,
                        source
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    UPDATE pyembed.collections AS t
    SET settings = t.settings || jsonb_build_object('embedding_column', embedding_column,
                                                    'adopted_version_id', t.active_version_id),
        updated_at = now()
    WHERE t.id = c.id
    RETURNING * INTO c;
    RETURN c;
END
$$;

-- Register a source table as a collection. Its change-capture triggers are attached with the
-- caller's own rights (TRIGGER on the source), and existing rows queued as the caller reads them.
-- embedding_column came as a new last parameter: the old signature goes first, or
-- calls would be ambiguous.
DROP FUNCTION IF EXISTS pyembed.create_collection(text, regclass, text[], text, text, text,
                                                   integer, integer, boolean, text, bigint, jsonb);
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
    auto_index_min_rows bigint DEFAULT NULL,
    index_options jsonb DEFAULT NULL,
    embedding_column text DEFAULT NULL)
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
                                      auto_index_min_rows, index_options);
    IF embedding_column IS NOT NULL THEN
        c := pyembed._adopt_embeddings(c.name, embedding_column);
    END IF;
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
    before pyembed.collections := c;
    live bigint;
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
        -- Search settings tuned for the old storage's index do not carry over to another one.
        index_options = CASE WHEN coalesce(_alter_collection.index_options->>'storage',
                                           pyembed._storage(t)) <> pyembed._storage(t)
                             THEN t.index_options - ARRAY['ef_search', 'probes', 'rerank']
                             ELSE t.index_options END
                        || coalesce(_alter_collection.index_options, '{}'::jsonb),
        -- 0 turns automatic builds off; NULL leaves the setting as it is.
        auto_index_min_rows = CASE WHEN _alter_collection.auto_index_min_rows = 0 THEN NULL
            ELSE coalesce(_alter_collection.auto_index_min_rows, t.auto_index_min_rows) END,
        -- A key set to JSON null goes back to its default.
        settings = jsonb_strip_nulls(t.settings || coalesce(_alter_collection.settings, '{}'::jsonb)),
        updated_at = now()
    WHERE t.id = c.id
    RETURNING * INTO c;
    -- Another storage: the live stores follow it (see _fit_store).
    IF pyembed._storage(c) <> pyembed._storage(before) THEN
        FOREACH live IN ARRAY array_remove(ARRAY[c.active_version_id, c.pending_version_id], NULL)
        LOOP
            PERFORM pyembed._fit_store(c, live);
        END LOOP;
    END IF;
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
    version_id bigint;
BEGIN
    EXECUTE format('DROP VIEW IF EXISTS %I.%I', 'pyembed_store', c.name || '_chunks');
    IF NOT coalesce(keep_store, false) THEN
        FOR version_id IN SELECT pyembed._store_versions(c.name) LOOP
            EXECUTE format('DROP TABLE %s', pyembed.store_table(c, version_id));
            EXECUTE format('DROP FUNCTION IF EXISTS %s', pyembed._nearest_function(c, version_id));
            EXECUTE format('DROP FUNCTION IF EXISTS %s', pyembed._search_function(c, version_id));
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
