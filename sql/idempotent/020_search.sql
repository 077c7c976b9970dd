-- requires: 0003
-- Searching a collection from SQL, logging every search, and recording feedback.
-- Re-applied on every upgrade: only CREATE OR REPLACE objects here.

-- pgvector's distance operator for a collection's distance.
CREATE OR REPLACE FUNCTION pyembed._distance_operator(distance text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog
AS $$
    SELECT CASE distance WHEN 'cosine' THEN '<=>' WHEN 'l2' THEN '<->'
                         WHEN 'inner_product' THEN '<#>' END
$$;

-- A similarity where larger is better, from a distance: 1 - cosine distance, the inner
-- product itself (pgvector's <#> is its negative), or 1 / (1 + Euclidean distance).
-- No SET clause, so the planner can inline it.
CREATE OR REPLACE FUNCTION pyembed._similarity(distance text, value double precision)
RETURNS double precision
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SECURITY INVOKER
AS $$
    SELECT CASE distance WHEN 'cosine' THEN 1 - value
                         WHEN 'inner_product' THEN -value
                         ELSE 1 / (1 + value) END
$$;

-- Checks shared by every search: the query, k, the dimension, the filter's columns.
CREATE OR REPLACE FUNCTION pyembed._check_search(c pyembed.collections, query vector, k integer,
                                                 filter jsonb)
RETURNS void
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pyembed, @extschema:vector@
AS $$
DECLARE
    dims integer;
    bad_keys text;
BEGIN
    IF query IS NULL THEN
        RAISE EXCEPTION 'the query vector is NULL' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'embed the query text first, or call the text form pyembed.search(collection, text)';
    END IF;
    IF k IS NULL OR k < 1 OR k > 1000 THEN
        RAISE EXCEPTION 'k = % is out of range', k USING ERRCODE = 'invalid_parameter_value',
            HINT = 'ask for between 1 and 1000 results; page with a filter for more';
    END IF;
    SELECT m.dimensions INTO dims FROM pyembed.models m WHERE m.id = c.model_id;
    IF vector_dims(query) <> dims THEN
        RAISE EXCEPTION 'the query vector has % dimensions, but collection "%" embeds with %',
            vector_dims(query), c.name, dims
            USING ERRCODE = 'data_exception',
                  HINT = 'embed the query with the collection''s model (pyembed.collection_status shows it)';
    END IF;
    IF c.active_version_id IS NULL THEN
        RAISE EXCEPTION 'collection "%" has no active model version', c.name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF filter IS NOT NULL THEN
        IF jsonb_typeof(filter) <> 'object' THEN
            RAISE EXCEPTION 'filter must be a JSON object of column values, not %', jsonb_typeof(filter)
                USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. filter => ''{"lang": "en"}''';
        END IF;
        SELECT string_agg(key, ', ') INTO bad_keys FROM jsonb_object_keys(filter) AS key
        WHERE NOT pyembed._has_column(c, key);
        IF bad_keys IS NOT NULL THEN
            RAISE EXCEPTION 'filter names column(s) % that % does not have', bad_keys,
                pyembed._qualified_source(c) USING ERRCODE = 'undefined_column';
        END IF;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION pyembed._has_column(c pyembed.collections, column_name text)
RETURNS boolean
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pyembed
AS $$
    SELECT EXISTS (
        SELECT FROM pg_attribute a
        WHERE a.attrelid = to_regclass(pyembed._qualified_source(c))
          AND a.attname = column_name AND a.attnum > 0 AND NOT a.attisdropped)
$$;

-- The k nearest source rows (best chunk each) as a jsonb array of {pk, chunk_seq, chunk,
-- distance}, nearest first: ORDER BY embedding <op> query LIMIT n on the active store, so its
-- ANN index is used. The join with the source drops rows deleted since they were embedded and
-- applies the source's row-level security to the caller. With a filter or row-level security
-- the join sits inside the scan, and pgvector's iterative scans keep reading the index until
-- LIMIT rows pass; otherwise the store is scanned alone (an exact scan then sorts the store, not
-- a join) and the few candidates are joined after.
CREATE OR REPLACE FUNCTION pyembed._nearest(c pyembed.collections, query vector, k integer,
                                            filter jsonb, ef_search integer, probes integer)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pyembed, @extschema:vector@
AS $$
DECLARE
    dims integer := vector_dims(query);
    op text := pyembed._distance_operator(c.distance);
    qexpr text := CASE WHEN dims > 2000 THEN format('$1::halfvec(%s)', dims) ELSE '$1' END;
    source text := pyembed._qualified_source(c);
    key_columns text := pyembed._key_columns(c);
    join_inside boolean := filter IS NOT NULL
                           OR (SELECT relrowsecurity FROM pg_class WHERE oid = to_regclass(source));
    fetch_n integer := k * 2;
    found_rows integer;
    found_chunks integer;
    results jsonb;
BEGIN
    -- Per call, else the collection's default (`pyembed index tune --target-recall` sets it).
    ef_search := coalesce(ef_search, (c.index_options->>'ef_search')::int);
    probes := coalesce(probes, (c.index_options->>'probes')::int);
    IF ef_search IS NOT NULL THEN
        PERFORM set_config('hnsw.ef_search', ef_search::text, true);
    END IF;
    IF probes IS NOT NULL THEN
        PERFORM set_config('ivfflat.probes', probes::text, true);
    END IF;
    -- Keep scanning the index past ef_search/probes until LIMIT rows pass (join, filter, or a
    -- LIMIT above ef_search).
    PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true);
    PERFORM set_config('ivfflat.iterative_scan', 'relaxed_order', true);
    -- Several chunks of one row can crowd the top: fetch more until k distinct rows are found.
    LOOP
        EXECUTE format(
            'WITH nearest AS MATERIALIZED ('
            '  SELECT %1$s, st.chunk_seq, st.chunk, st.embedding %2$s %3$s AS distance'
            '  FROM %4$s AS st %5$s'
            '  WHERE st.embedding IS NOT NULL%6$s'
            '  ORDER BY st.embedding %2$s %3$s LIMIT %7$s),'
            ' best AS (SELECT DISTINCT ON (pk) * FROM (SELECT %8$s AS pk, n.chunk_seq, n.chunk,'
            '   n.distance FROM nearest AS n %9$s) AS found ORDER BY pk, distance)'
            ' SELECT jsonb_agg(jsonb_build_object(''pk'', pk, ''chunk_seq'', chunk_seq,'
            '   ''chunk'', chunk, ''distance'', distance) ORDER BY distance), count(*),'
            '  (SELECT count(*) FROM nearest)'
            ' FROM (SELECT * FROM best ORDER BY distance LIMIT %10$s) AS top',
            (SELECT string_agg(format('st.%I', col), ', ') FROM unnest(c.pk_columns) AS col),
            op, qexpr, pyembed.store_table(c, c.active_version_id),
            CASE WHEN join_inside THEN format('JOIN %s AS s USING (%s)', source, key_columns)
                 ELSE '' END,
            CASE WHEN filter IS NULL THEN '' ELSE ' AND to_jsonb(s) @> $2' END,
            fetch_n, pyembed._pk_sql(c, 'n'),
            CASE WHEN join_inside THEN ''
                 ELSE format('JOIN %s AS s USING (%s)', source, key_columns) END,
            k)
        INTO results, found_rows, found_chunks
        USING query, filter;
        -- Done with k rows, or when the store (or the filter) has no more chunks to give.
        EXIT WHEN found_rows >= k OR found_chunks < fetch_n OR fetch_n >= k * 128;
        fetch_n := fetch_n * 4;
    END LOOP;
    RETURN coalesce(results, '[]'::jsonb);
END
$$;

-- Write a search and its ordered results (a jsonb array of {pk, chunk_seq, distance}) to the
-- query log, unless logging is off for the call or the collection, or the server is a read-only
-- standby. Returns the query id, or NULL when nothing was logged.
CREATE OR REPLACE FUNCTION pyembed._log_search(c pyembed.collections, log boolean, query vector,
                                               query_text text, k integer, params jsonb,
                                               results jsonb, started timestamptz)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pyembed, @extschema:vector@
AS $$
DECLARE
    logged_id bigint;
BEGIN
    IF NOT coalesce(log, (c.settings->>'log_queries')::boolean, true) OR pg_is_in_recovery() THEN
        RETURN NULL;
    END IF;
    -- One statement for both tables: every statement of a search adds to its latency.
    WITH logged AS (
        INSERT INTO pyembed.query_log (collection_id, model_version_id, query_text, query_vector,
                                       k, params, result_count, latency_ms)
        VALUES (c.id, c.active_version_id, query_text, query::vector, k, jsonb_strip_nulls(params),
                jsonb_array_length(results),
                extract(epoch FROM clock_timestamp() - started) * 1000)
        RETURNING id),
    listed AS (
        INSERT INTO pyembed.query_results (query_id, rank, pk, chunk_seq, distance)
        SELECT logged.id, r.ord, r.item->'pk', (r.item->>'chunk_seq')::int,
               (r.item->>'distance')::float8
        FROM logged, jsonb_array_elements(results) WITH ORDINALITY AS r(item, ord))
    SELECT id INTO logged_id FROM logged;
    RETURN logged_id;
END
$$;

-- Nearest rows of a collection to a query vector, one row per source row (its best chunk),
-- nearest first, logged unless told not to (query_id NULL then).
CREATE OR REPLACE FUNCTION pyembed.search(
    collection text,
    query vector,
    k integer DEFAULT 10,
    filter jsonb DEFAULT NULL,
    ef_search integer DEFAULT NULL,
    probes integer DEFAULT NULL,
    log boolean DEFAULT NULL,
    query_text text DEFAULT NULL)
RETURNS TABLE (query_id bigint, rank integer, pk jsonb, chunk text, distance double precision,
               similarity double precision)
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pyembed, @extschema:vector@
AS $$
DECLARE
    c pyembed.collections := pyembed.collection(search.collection);
    started timestamptz := clock_timestamp();
    results jsonb;
    logged_id bigint;
BEGIN
    PERFORM pyembed._check_search(c, query, k, filter);
    results := pyembed._nearest(c, query, k, filter, ef_search, probes);
    logged_id := pyembed._log_search(
        c, log, query, query_text, k,
        jsonb_build_object('filter', filter, 'ef_search', ef_search, 'probes', probes),
        results, started);
    RETURN QUERY
    SELECT logged_id, r.ord::int, r.item->'pk', r.item->>'chunk', d.distance,
           pyembed._similarity(c.distance, d.distance)
    FROM jsonb_array_elements(results) WITH ORDINALITY AS r(item, ord)
    CROSS JOIN LATERAL (SELECT (r.item->>'distance')::float8 AS distance) AS d
    ORDER BY r.ord;
END
$$;

-- The text form: embeds the query inside the database where pyembed.embed(text, text) exists
-- (plpython3u); elsewhere it says what to do instead.
CREATE OR REPLACE FUNCTION pyembed.search(
    collection text,
    query text,
    k integer DEFAULT 10,
    filter jsonb DEFAULT NULL,
    ef_search integer DEFAULT NULL,
    probes integer DEFAULT NULL,
    log boolean DEFAULT NULL)
RETURNS TABLE (query_id bigint, rank integer, pk jsonb, chunk text, distance double precision,
               similarity double precision)
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pyembed, @extschema:vector@
AS $$
DECLARE
    query_vector vector;
BEGIN
    IF to_regprocedure('pyembed.embed(text,text)') IS NULL THEN
        RAISE EXCEPTION 'this database cannot embed query text (no pyembed.embed function)'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'pass a vector: embed the text in the application (or with pyembed serve) '
                         'and call pyembed.search(collection, $1::vector); a vector literal needs '
                         'the cast too: ''[0.1, ...]''::vector';
    END IF;
    EXECUTE 'SELECT pyembed.embed($1, $2)' INTO query_vector USING query, collection;
    RETURN QUERY SELECT * FROM pyembed.search(collection, query_vector, k, filter, ef_search,
                                              probes, log, query);
END
$$;

-- Record what a user did with a result of a logged search: a click, a purchase, a judgment.
CREATE OR REPLACE FUNCTION pyembed.record_feedback(
    query_id bigint,
    pk jsonb,
    signal text DEFAULT 'click',
    weight real DEFAULT 1.0)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pyembed
AS $$
DECLARE
    key jsonb := CASE WHEN jsonb_typeof(pk) = 'array' THEN pk ELSE jsonb_build_array(pk) END;
    new_id bigint;
BEGIN
    IF NOT EXISTS (SELECT FROM pyembed.query_log q WHERE q.id = record_feedback.query_id) THEN
        RAISE EXCEPTION 'no logged search has id %', query_id USING ERRCODE = 'foreign_key_violation',
            HINT = 'pass the query_id that pyembed.search returned (NULL when logging was off)';
    END IF;
    INSERT INTO pyembed.feedback (query_id, pk, signal, weight)
    VALUES (query_id, key, signal, weight)
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;

-- Delete logged searches older than the retention (default: the collection's
-- settings->>'query_log_retention', else 90 days). Returns how many were deleted.
CREATE OR REPLACE FUNCTION pyembed.prune_query_log(older_than interval DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pyembed
AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM pyembed.query_log AS q
    USING pyembed.collections AS c
    WHERE c.id = q.collection_id
      AND q.created_at < now() - coalesce(older_than,
                                          (c.settings->>'query_log_retention')::interval,
                                          interval '90 days');
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
