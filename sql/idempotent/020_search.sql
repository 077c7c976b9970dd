-- requires: 0003
-- Searching a collection from SQL, logging every search, and recording feedback.
-- Re-applied on every upgrade: CREATE OR REPLACE objects, then the stores' search functions.

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
    SELECT CASE distance WHEN 'cosine' THEN 1::float8 - value
                         WHEN 'inner_product' THEN -value
                         ELSE 1::float8 / (1::float8 + value) END
$$;

-- Checks shared by every search: the query, k, the dimension.
CREATE OR REPLACE FUNCTION pyembed._check_search(c pyembed.collections, query vector, k integer,
                                                 filter jsonb)
RETURNS void
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    dims integer;
BEGIN
    IF query IS NULL THEN
        RAISE EXCEPTION 'the query vector is NULL' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'embed the query text first, or call the text form pyembed.search(collection, text)';
    END IF;
    IF k IS NULL OR k < 1 OR k > pyembed.max_results() THEN
        RAISE EXCEPTION 'k = % is out of range', k USING ERRCODE = 'invalid_parameter_value',
            HINT = format('ask for between 1 and %s results; page with a filter for more',
                          pyembed.max_results());
    END IF;
    SELECT m.dimensions INTO dims FROM pyembed.models m WHERE m.id = c.model_id;
    IF @extschema:vector@.vector_dims(query) <> dims THEN
        RAISE EXCEPTION 'the query vector has % dimensions, but collection "%" embeds with %',
            @extschema:vector@.vector_dims(query), c.name, dims
            USING ERRCODE = 'data_exception',
                  HINT = 'embed the query with the collection''s model (pyembed.collection_status shows it)';
    END IF;
    IF c.active_version_id IS NULL THEN
        RAISE EXCEPTION 'collection "%" has no active model version', c.name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    -- A zero vector has no direction: every cosine distance would be NaN.
    IF c.distance = 'cosine' AND @extschema:vector@.vector_norm(query) = 0 THEN
        RAISE EXCEPTION 'the query vector is all zeros, which has no cosine distance to anything'
            USING ERRCODE = 'data_exception',
                  HINT = 'embed the query text with the collection''s model; an empty text embeds to a real vector';
    END IF;
    -- The filter: _filter_sql, which compiles it, names what is wrong with it.
END
$$;

CREATE OR REPLACE FUNCTION pyembed._has_column(c pyembed.collections, column_name text)
RETURNS boolean
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (
        SELECT FROM pg_attribute a
        WHERE a.attrelid = to_regclass(pyembed._qualified_source(c))
          AND a.attname = column_name AND a.attnum > 0 AND NOT a.attisdropped)
$$;

-- The SQL of one nearest-rows query: ORDER BY embedding <op> $1 LIMIT `candidates` on a store, so
-- its ANN index is used, then the best chunk of each of the first $2 source rows as aligned
-- arrays, with the number of candidates.
-- Binary storage orders by the Hamming distance of the bits instead (its index), takes
-- `candidates` (rerank times the $3 wanted) and re-ranks them by the full vectors.
-- The join with the source drops rows deleted since they were embedded and applies the source's
-- row-level security to the caller. With a filter (`predicate`, from _filter_sql: its values
-- are a parameter of the caller's) or row-level security the join sits
-- inside the scan (join_inside), and pgvector's iterative scans keep reading the index until
-- LIMIT rows pass; otherwise the store is scanned alone and each candidate looked up by its key
-- after. `exact` ranks every row by its distance (no index can serve that order): for a filter
-- that keeps few rows (_filtered_sql).
CREATE OR REPLACE FUNCTION pyembed._nearest_sql(c pyembed.collections, version_id bigint,
                                                dims integer, join_inside boolean,
                                                candidates text, predicate text, exact boolean)
RETURNS text
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    query_sql text := pyembed._as_store_type(c, '$1', dims);
    bits boolean := pyembed._storage(c) = 'binary' AND NOT exact;
    nearest text;
BEGIN
    nearest := format(
        'SELECT %1$s, st.chunk_seq, st.chunk, st.embedding %2$s %3$s AS distance'
        ' FROM %4$s AS st %5$s WHERE st.embedding IS NOT NULL%6$s ORDER BY %7$s LIMIT %8$s',
        (SELECT string_agg(format('st.%I', col), ', ') FROM unnest(c.pk_columns) AS col),
        pyembed._distance_operator(c.distance), query_sql,
        pyembed.store_table(c, version_id),
        CASE WHEN join_inside
             THEN format('JOIN %s AS s USING (%s)', pyembed._qualified_source(c),
                         pyembed._key_columns(c))
             ELSE '' END,
        CASE WHEN predicate IS NOT NULL THEN format(' AND (%s)', predicate) ELSE '' END,
        CASE WHEN bits
             THEN format('%s OPERATOR(@extschema:vector@.<~>) %s',
                         pyembed._binary_sql('st.embedding', dims),
                         pyembed._binary_sql(query_sql, dims))
             ELSE format('(st.embedding %s %s)%s', pyembed._distance_operator(c.distance),
                         query_sql, CASE WHEN exact THEN ' + 0' ELSE '' END)
             END,
        candidates);
    IF bits THEN
        nearest := format('SELECT * FROM (%s) AS candidates ORDER BY distance LIMIT $3', nearest);
    END IF;
    RETURN format(
        'WITH nearest AS MATERIALIZED (%1$s),'
        ' best AS (SELECT DISTINCT ON (pk) * FROM (SELECT %2$s AS pk, n.chunk_seq, n.chunk,'
        '   n.distance FROM nearest AS n %3$s) AS found ORDER BY pk, distance)'
        -- Parallel arrays, not JSON: building and reading back a JSON object per result cost
        -- more than the index scan at 3,000 rows. The same total order in every aggregate
        -- keeps the arrays aligned (one sort where the planner sees it, PostgreSQL 16+).
        ' SELECT array_agg(pk ORDER BY distance, pk), array_agg(chunk_seq ORDER BY distance, pk),'
        '  array_agg(chunk ORDER BY distance, pk), array_agg(distance ORDER BY distance, pk),'
        '  (SELECT count(*) FROM nearest)'
        ' FROM (SELECT * FROM best ORDER BY distance, pk LIMIT $2) AS top',
        nearest, pyembed._pk_sql(c, 'n'),
        -- One key lookup per candidate: a plain join lets the planner hash the whole source
        -- when it is small, which costs more than the search itself.
        CASE WHEN join_inside THEN ''
             ELSE format('CROSS JOIN LATERAL (SELECT FROM %s AS s WHERE %s LIMIT 1) AS s',
                         pyembed._qualified_source(c),
                         (SELECT string_agg(format('s.%1$I = n.%1$I', col), ' AND ')
                          FROM unnest(c.pk_columns) AS col)) END);
END
$$;

-- The query of a filtered search (_nearest_sql; `candidates` is $4, the filter's values $5),
-- planned for this call. pgvector's iterative index scan reads about candidates / (the share of
-- rows the filter keeps) index entries, a graph step each; ranking the kept rows exactly reads
-- each of them once, by key. So when the planner expects the filter to keep fewer than
-- sqrt(5 * candidates * rows) rows (a graph step costs about five key look-ups: 1% of 100,000
-- rows took 31 ms through the index; benchmarks/filters.py), the kept rows are ranked exactly,
-- which also finds every one of them.
CREATE OR REPLACE FUNCTION pyembed._filtered_sql(c pyembed.collections, version_id bigint,
                                                 dims integer, predicate text, query vector,
                                                 k integer, fetch_n integer, candidates integer,
                                                 params text[])
RETURNS text
LANGUAGE plpgsql
VOLATILE  -- PostgreSQL allows EXPLAIN in volatile functions only
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    plan json;
    kept double precision;
    total double precision;
BEGIN
    -- The planner's estimates, as the caller (row-level security included), with the values.
    EXECUTE format('EXPLAIN (FORMAT JSON) SELECT FROM %s AS s WHERE %s',
                   pyembed._qualified_source(c), predicate)
    INTO plan USING query, k, fetch_n, candidates, params;
    kept := (plan->0->'Plan'->>'Plan Rows')::double precision;
    EXECUTE format('EXPLAIN (FORMAT JSON) SELECT FROM %s AS s', pyembed._qualified_source(c))
    INTO plan;
    total := (plan->0->'Plan'->>'Plan Rows')::double precision;
    RETURN pyembed._nearest_sql(c, version_id, dims, true, '$4', predicate,
                                kept <= sqrt(5 * candidates * total));
END
$$;

-- The index scans of a store: pyembed_store.<store>_nearest(query, k, fetch_n, candidates,
-- join_inside), the forms of _nearest_sql as static SQL (unfiltered), so that each session plans
-- them once and keeps the plans (a search must not plan its SQL on every call). One statement per
-- candidate count up to 4,096 (powers of two, as _nearest asks for them): with LIMIT a parameter
-- a kept plan would be made for a tenth of the store and scan it whole, so larger counts are
-- planned per call, for their own LIMIT (dynamic SQL). Created
-- with the store and again whenever what its SQL depends on changes (the storage; pyembed's own
-- SQL on an upgrade). SECURITY INVOKER: it reads as its caller, like the store.
CREATE OR REPLACE FUNCTION pyembed._compile_nearest(c pyembed.collections, version_id bigint)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    dims integer;
    forms text := '';
    inside boolean;
    signature text := pyembed._nearest_function(c, version_id)
                      || '(@extschema:vector@.vector, integer, integer, integer, boolean)';
    outs text := 'OUT pks jsonb[], OUT chunk_seqs integer[], OUT chunks text[], '
                 'OUT distances double precision[], OUT found_chunks bigint';
BEGIN
    SELECT m.dimensions INTO dims FROM pyembed.model_versions AS v
    JOIN pyembed.models AS m ON m.id = v.model_id WHERE v.id = version_id;
    -- pgvector defines hnsw.* and ivfflat.* when its library loads (a vector's input does it);
    -- before, they are placeholders that only a superuser may put in a function's SET clause.
    PERFORM @extschema:vector@.vector_dims('[1]'::@extschema:vector@.vector);
    FOREACH inside IN ARRAY ARRAY[true, false] LOOP
        forms := forms || format(
            ' %s CASE $4 %s ELSE EXECUTE %L INTO pks, chunk_seqs, chunks, distances,'
            ' found_chunks USING $1, $2, $3, $4; END CASE;',
            CASE WHEN inside THEN 'IF $5 THEN' ELSE 'ELSE' END,
            (SELECT string_agg(format('WHEN %s THEN %s INTO pks, chunk_seqs, chunks, distances,'
                                      ' found_chunks;',
                                      n, pyembed._nearest_sql(c, version_id, dims, inside, n::text,
                                                                NULL, false)),
                               ' ' ORDER BY n)
             FROM (SELECT (2 ^ e)::int AS n FROM generate_series(3, 12) AS e) AS ladder),
            pyembed._nearest_sql(c, version_id, dims, inside, '$4', NULL, false));
    END LOOP;
    -- A function made by an earlier release may return other columns, which CREATE OR REPLACE
    -- cannot change: it goes first, in this transaction, so no search sees it missing.
    IF right(pg_get_function_arguments(to_regprocedure(signature)), length(outs)) <> outs THEN
        EXECUTE format('DROP FUNCTION IF EXISTS %s', signature);
    END IF;
    -- Until this release it took the filter as its second argument (matched as JSON, which
    -- no index serves): filters are compiled per call now (_filter_sql).
    EXECUTE format('DROP FUNCTION IF EXISTS %s(@extschema:vector@.vector, jsonb, integer, integer,'
                   ' integer, boolean)', pyembed._nearest_function(c, version_id));
    EXECUTE format(
        'CREATE OR REPLACE FUNCTION %s(@extschema:vector@.vector, integer, integer, integer,'
        ' boolean, %s)'
        ' LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path = pg_catalog, pg_temp'
        -- Keep scanning the index past ef_search/probes until LIMIT rows pass (join, filter, or
        -- a LIMIT above ef_search).
        ' SET hnsw.iterative_scan = relaxed_order SET ivfflat.iterative_scan = relaxed_order'
        ' AS %L',
        pyembed._nearest_function(c, version_id), outs,
        -- Parameters by position and columns first: a source may have a column of any name.
        format(E'#variable_conflict use_column\nBEGIN%s END IF; END', forms));
    EXECUTE format('COMMENT ON FUNCTION %s IS %L', signature,
                   format('pyembed search of collection %s, model version %s (generated)',
                          c.name, version_id));
    PERFORM pyembed._compile_search(c, version_id, dims);
    IF to_regprocedure('pyembed._grant_nearest(pyembed.collections,bigint)') IS NOT NULL THEN
        PERFORM pyembed._grant_nearest(c, version_id);
    END IF;
END
$$;

-- The whole of pyembed.search on one store: pyembed_store.<store>_search(query, k, filter,
-- ef_search, probes, log, query_text), to which pyembed.search hands the call. What the search
-- of this store depends on is written into it as constants (the collection's id, the
-- dimensions, the distance, the storage, the source), so a search runs three PL/pgSQL frames
-- (this one, the store's _nearest function, the log's writer) instead of a dozen helpers that
-- each look the same things up behind their own SET clause. The common case is checked in one
-- expression; anything unusual
-- goes to _check_search, which names the problem. It reads the collection row itself, by id,
-- because the log's writer trusts the row it is handed. Generated with the _nearest function.
CREATE OR REPLACE FUNCTION pyembed._compile_search(c pyembed.collections, version_id bigint,
                                                   dims integer)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    search_function text := pyembed._search_function(c, version_id);
BEGIN
    EXECUTE format(
        'CREATE OR REPLACE FUNCTION %s(query @extschema:vector@.vector, k integer, filter jsonb,'
        ' ef_search integer, probes integer, log boolean, query_text text)'
        ' RETURNS TABLE (query_id bigint, rank integer, pk jsonb, chunk text,'
        ' distance double precision, similarity double precision)'
        ' LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp'
        -- For a filtered search, planned here per call (the _nearest function has its own).
        ' SET hnsw.iterative_scan = relaxed_order SET ivfflat.iterative_scan = relaxed_order AS %L',
        search_function, format($body$#variable_conflict use_column
DECLARE
    started timestamptz := clock_timestamp();
    c pyembed.collections;
    predicate text;
    filter_params text[];
    filtered text;
    join_inside boolean;
    ef integer;
    nprobes integer;
    fetch_n integer := 8;
    rerank integer := 1;
    pks jsonb[];
    chunk_seqs integer[];
    chunks text[];
    distances double precision[];
    found_chunks bigint;
    logged_id bigint;
BEGIN
    SELECT * INTO c FROM pyembed.collections AS pc WHERE pc.id = %1$s;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the collection of search function %2$s no longer exists'
            USING ERRCODE = 'undefined_object', HINT = 'search the collection by name: pyembed.search';
    END IF;
    -- The version searched is the one logged: the active one, unless a kept version's function
    -- is called directly.
    c.active_version_id := %10$s;
    IF query IS NULL OR k IS NULL OR k < 1 OR k > %3$s
       OR @extschema:vector@.vector_dims(query) <> %4$s OR filter IS NOT NULL%5$s THEN
        PERFORM pyembed._check_search(c, query, k, filter);
        -- A filter's predicate differs per call: its query is planned per call, with the
        -- filter's values as constants, so that the source's indexes serve it.
        IF filter IS NOT NULL THEN
            SELECT f.predicate, f.params INTO predicate, filter_params
            FROM pyembed._filter_sql(c, filter, '$5') AS f;
        END IF;
    END IF;
    join_inside := filter IS NOT NULL
                   OR (SELECT cl.relrowsecurity FROM pg_class AS cl WHERE cl.oid = to_regclass(%6$L));
    -- Per call, else the collection's default (`pyembed index tune --target-recall` sets it).
    ef := coalesce(ef_search, (c.index_options->>'ef_search')::int);
    nprobes := coalesce(probes, (c.index_options->>'probes')::int);
    IF ef IS NOT NULL THEN
        PERFORM set_config('hnsw.ef_search', ef::text, true);
    END IF;
    IF nprobes IS NOT NULL THEN
        PERFORM set_config('ivfflat.probes', nprobes::text, true);
    END IF;%7$s
    -- Candidates in powers of two (the counts the _nearest function keeps plans for), and
    -- more while several chunks of one row crowd the top, as pyembed._nearest_hits does.
    WHILE fetch_n < k + k / 2 LOOP
        fetch_n := fetch_n * 2;
    END LOOP;
    IF predicate IS NOT NULL THEN
        filtered := pyembed._filtered_sql(c, %10$s, %4$s, predicate, query, k, fetch_n,
                                          fetch_n * rerank, filter_params);
    END IF;
    LOOP
        IF filtered IS NULL THEN
            SELECT * INTO pks, chunk_seqs, chunks, distances, found_chunks
            FROM %8$s(query, k, fetch_n, fetch_n * rerank, join_inside);
        ELSE
            EXECUTE filtered INTO pks, chunk_seqs, chunks, distances, found_chunks
            USING query, k, fetch_n, fetch_n * rerank, filter_params;
        END IF;
        EXIT WHEN coalesce(cardinality(pks), 0) >= k OR found_chunks < fetch_n
                  OR fetch_n >= k * 64;
        fetch_n := fetch_n * 4;
    END LOOP;
    pks := coalesce(pks, '{}');
    chunk_seqs := coalesce(chunk_seqs, '{}');
    chunks := coalesce(chunks, '{}');
    distances := coalesce(distances, '{}');
    logged_id := pyembed._log_search(
        c, log, query, query_text, k,
        jsonb_build_object('filter', filter, 'ef_search', ef_search, 'probes', probes),
        pks, chunk_seqs, distances, started);
    RETURN QUERY
    SELECT logged_id, r.ord::int, r.pk, r.chunk, r.distance, pyembed._similarity(%9$L, r.distance)
    FROM unnest(pks, chunks, distances) WITH ORDINALITY AS r(pk, chunk, distance, ord)
    ORDER BY r.ord;
END$body$,
            c.id, search_function, pyembed.max_results(), dims,
            CASE WHEN c.distance = 'cosine'
                 THEN E'\n       OR @extschema:vector@.vector_norm(query) = 0' ELSE '' END,
            pyembed._qualified_source(c),
            CASE WHEN pyembed._storage(c) = 'binary'
                 THEN E'\n    rerank := pyembed._rerank(c);'
                 ELSE '' END,
            pyembed._nearest_function(c, version_id), c.distance, version_id));
    EXECUTE format('COMMENT ON FUNCTION %s IS %L', search_function,
                   format('pyembed search of collection %s, model version %s (generated)',
                          c.name, version_id));
END
$$;

-- pgvector defines hnsw.* and ivfflat.* when its library loads (a vector's input does it);
-- before, they are placeholders that only a superuser may name in a SET clause, as below.
SELECT @extschema:vector@.vector_dims('[1]'::@extschema:vector@.vector);

-- The k nearest source rows of the active store (see _nearest_sql), nearest first, through the
-- store's _nearest function (_compile_nearest), or with a filter its own query planned per call,
-- as aligned arrays, for the searches that re-rank (pyembed.search runs the same loop in the
-- store's _search function). Candidates are fetched in powers of two, the counts the kept plans
-- are for.
CREATE OR REPLACE FUNCTION pyembed._nearest_hits(c pyembed.collections, query vector, k integer,
                                                 filter jsonb, ef_search integer, probes integer,
                                                 OUT pks jsonb[], OUT chunk_seqs integer[],
                                                 OUT chunks text[],
                                                 OUT distances double precision[])
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
-- For a filtered search, planned here per call (the store's _nearest function has its own).
SET hnsw.iterative_scan = relaxed_order
SET ivfflat.iterative_scan = relaxed_order
AS $$
DECLARE
    join_inside boolean := filter IS NOT NULL
                           OR (SELECT relrowsecurity FROM pg_class
                               WHERE oid = to_regclass(pyembed._qualified_source(c)));
    fetch_n integer := 2 ^ ceil(log(2, greatest(k + k / 2, 8)));
    rerank integer := CASE WHEN pyembed._storage(c) = 'binary' THEN pyembed._rerank(c) ELSE 1 END;
    search_function text := pyembed._nearest_function(c, c.active_version_id);
    found_chunks integer;
    compiled record;
    filtered text;
BEGIN
    IF to_regproc(search_function) IS NULL THEN
        RAISE EXCEPTION 'the search function % of collection "%" is missing', search_function, c.name
            USING ERRCODE = 'undefined_function',
                  HINT = 'run pyembed db upgrade, which creates it again';
    END IF;
    -- Per call, else the collection's default (`pyembed index tune --target-recall` sets it).
    ef_search := coalesce(ef_search, (c.index_options->>'ef_search')::int);
    probes := coalesce(probes, (c.index_options->>'probes')::int);
    IF ef_search IS NOT NULL THEN
        PERFORM set_config('hnsw.ef_search', ef_search::text, true);
    END IF;
    IF probes IS NOT NULL THEN
        PERFORM set_config('ivfflat.probes', probes::text, true);
    END IF;
    IF filter IS NOT NULL THEN
        compiled := pyembed._filter_sql(c, filter, '$5');
        filtered := pyembed._filtered_sql(c, c.active_version_id,
                                          @extschema:vector@.vector_dims(query),
                                          compiled.predicate, query, k, fetch_n,
                                          fetch_n * rerank, compiled.params);
    END IF;
    -- Several chunks of one row can crowd the top: fetch more until k distinct rows are found.
    LOOP
        IF filtered IS NULL THEN
            EXECUTE format('SELECT * FROM %s($1, $2, $3, $4, $5)', search_function)
            INTO pks, chunk_seqs, chunks, distances, found_chunks
            USING query, k, fetch_n, fetch_n * rerank, join_inside;
        ELSE
            EXECUTE filtered INTO pks, chunk_seqs, chunks, distances, found_chunks
            USING query, k, fetch_n, fetch_n * rerank, compiled.params;
        END IF;
        -- Done with k rows, or when the store (or the filter) has no more chunks to give.
        EXIT WHEN coalesce(cardinality(pks), 0) >= k OR found_chunks < fetch_n
                  OR fetch_n >= k * 64;
        fetch_n := fetch_n * 4;
    END LOOP;
    pks := coalesce(pks, '{}');
    chunk_seqs := coalesce(chunk_seqs, '{}');
    chunks := coalesce(chunks, '{}');
    distances := coalesce(distances, '{}');
END
$$;

-- The same as a JSON array of {pk, chunk_seq, chunk, distance}, for the searches that re-rank.
CREATE OR REPLACE FUNCTION pyembed._nearest(c pyembed.collections, query vector, k integer,
                                            filter jsonb, ef_search integer, probes integer)
RETURNS jsonb
LANGUAGE sql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('pk', u.pk, 'chunk_seq', u.chunk_seq,
                                                 'chunk', u.chunk, 'distance', u.distance)
                              ORDER BY u.ord), '[]')
    FROM pyembed._nearest_hits(c, query, k, filter, ef_search, probes) AS h,
         unnest(h.pks, h.chunk_seqs, h.chunks, h.distances)
             WITH ORDINALITY AS u(pk, chunk_seq, chunk, distance, ord)
$$;

-- The tenant a search of collection `c` runs for: the value of the setting the collection names
-- in settings->>'tenant_setting' (e.g. app.tenant), or NULL when it names none.
CREATE OR REPLACE FUNCTION pyembed._current_tenant(collection_id bigint)
RETURNS text
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT nullif(current_setting(c.settings->>'tenant_setting', true), '')
    FROM pyembed.collections AS c WHERE c.id = collection_id
$$;

-- Whether `role` may see a logged search by `searched_by` for `tenant`: its own searches, as
-- the same tenant; writers (who train from the log) and pyembed's owner see all of them.
CREATE OR REPLACE FUNCTION pyembed._may_see_search(role name, collection_id bigint,
                                                   searched_by text, tenant text)
RETURNS boolean
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (searched_by = role AND tenant IS NOT DISTINCT FROM pyembed._current_tenant(collection_id))
        OR pg_has_role(role, 'pyembed_writer', 'USAGE') OR pg_has_role(role, 'pyembed_owner', 'USAGE')
$$;

-- Write a search and its ordered results (aligned arrays of keys, chunk numbers, distances) to
-- the query log, unless logging is off for the call or the collection, or the transaction cannot
-- write (a standby, or READ ONLY). Returns the query id, or NULL when nothing was logged.
-- SECURITY DEFINER: nobody writes the log directly, so it records who searched (the caller, as
-- the collection's tenant) and what pyembed's own search functions returned: it refuses any
-- other caller.
CREATE OR REPLACE FUNCTION pyembed._log_search(c pyembed.collections, log boolean, query vector,
                                               query_text text, k integer, params jsonb,
                                               pks jsonb[], chunk_seqs integer[],
                                               distances double precision[], started timestamptz,
                                               reranker_version_id bigint DEFAULT NULL,
                                               rerank_scores double precision[] DEFAULT NULL,
                                               canary_id bigint DEFAULT NULL,
                                               result_teams smallint[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    logged_id bigint;
    stack text;
BEGIN
    IF NOT coalesce(log, (c.settings->>'log_queries')::boolean, true) OR pg_is_in_recovery()
       OR current_setting('transaction_read_only') = 'on' THEN
        RETURN NULL;
    END IF;
    GET DIAGNOSTICS stack = PG_CONTEXT;
    IF split_part(stack, E'\n', 2)
       !~ '^PL/pgSQL function pyembed(\._log_search|\._reranked_search|\._canary_search|_store\.[a-z0-9_]+_v[0-9]+_search)\(' THEN
        RAISE EXCEPTION 'pyembed._log_search is called by pyembed''s search functions only'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'search with pyembed.search (or log a search run elsewhere with pyembed.log_search)';
    END IF;
    -- The log entry does not wait for its WAL flush: a server crash can lose the last moments
    -- of the log (about three wal_writer_delay), never corrupt it. Not when this transaction
    -- wrote before the search (that durability is the caller's), nor when the collection asks
    -- for it (log_synchronous_commit). A transaction that writes after searching commits the
    -- same way; the README says so.
    IF pg_current_xact_id_if_assigned() IS NULL
       AND NOT coalesce((c.settings->>'log_synchronous_commit')::boolean, false) THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    -- One row: the results are arrays of it (0014), not a row each.
    INSERT INTO pyembed.query_log (collection_id, model_version_id, query_text, query_vector, k,
                                   params, result_count, latency_ms, searched_by, tenant,
                                   result_pks, result_chunk_seqs, result_distances,
                                   reranker_version_id, result_rerank_scores)
    VALUES (c.id, c.active_version_id, query_text, query::@extschema:vector@.vector, k,
            jsonb_strip_nulls(params), cardinality(pks),
            extract(epoch FROM clock_timestamp() - started) * 1000,
            -- pyembed._caller() and pyembed._current_tenant() inline: every frame of a search
            -- shows in its latency (a SQL function with a SET clause is never inlined).
            CASE WHEN current_setting('role') = 'none' THEN session_user
                 ELSE current_setting('role')::name END,
            nullif(current_setting(c.settings->>'tenant_setting', true), ''),
            pks, chunk_seqs, distances, reranker_version_id, rerank_scores)
    RETURNING id INTO logged_id;
    -- A canary's search (077): which canary, and which version placed each result. A second
    -- statement, so that the columns (0020) are needed only by the searches that fill them.
    IF canary_id IS NOT NULL THEN
        UPDATE pyembed.query_log AS q
        SET canary_id = _log_search.canary_id, result_teams = _log_search.result_teams
        WHERE q.id = logged_id;
    END IF;
    RETURN logged_id;
END
$$;

-- The same for the searches that rank in JSON (an array of {pk, chunk_seq, distance}): they are
-- the callers it accepts, and it hands their results to the form above.
CREATE OR REPLACE FUNCTION pyembed._log_search(c pyembed.collections, log boolean, query vector,
                                               query_text text, k integer, params jsonb,
                                               results jsonb, started timestamptz,
                                               reranker_version_id bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    stack text;
    pks jsonb[];
    chunk_seqs integer[];
    distances double precision[];
    rerank_scores double precision[];
BEGIN
    GET DIAGNOSTICS stack = PG_CONTEXT;
    IF split_part(stack, E'\n', 2)
       !~ '^PL/pgSQL function pyembed\.(hybrid_search|search_domain_aware|log_search)\(' THEN
        RAISE EXCEPTION 'pyembed._log_search is called by pyembed''s search functions only'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'search with pyembed.search (or log a search run elsewhere with pyembed.log_search)';
    END IF;
    SELECT coalesce(array_agg(r.item->'pk' ORDER BY r.ord), '{}'),
           coalesce(array_agg((r.item->>'chunk_seq')::int ORDER BY r.ord), '{}'),
           coalesce(array_agg((r.item->>'distance')::float8 ORDER BY r.ord), '{}'),
           CASE WHEN reranker_version_id IS NOT NULL
                THEN coalesce(array_agg(coalesce((r.item->>'rerank_score')::float8, '-Infinity')
                                        ORDER BY r.ord), '{}') END
    INTO pks, chunk_seqs, distances, rerank_scores
    FROM jsonb_array_elements(results) WITH ORDINALITY AS r(item, ord);
    -- Arguments that are all variables: a plain call, so the stack shows this function.
    RETURN pyembed._log_search(c, log, query, query_text, k, params, pks, chunk_seqs, distances,
                               started, reranker_version_id, rerank_scores);
END
$$;

-- Nearest rows of a collection to a query vector, one row per source row (its best chunk),
-- nearest first, logged unless told not to (query_id NULL then): run by the active store's
-- search function (_compile_search). With rerank => N, the best N reordered by a reranker
-- (_reranked_search, 087); rerank_score is NULL otherwise.
CREATE OR REPLACE FUNCTION pyembed.search(
    collection text,
    query vector,
    k integer DEFAULT 10,
    filter jsonb DEFAULT NULL,
    ef_search integer DEFAULT NULL,
    probes integer DEFAULT NULL,
    log boolean DEFAULT NULL,
    query_text text DEFAULT NULL,
    rerank integer DEFAULT NULL,
    reranker text DEFAULT NULL,
    candidate_query vector DEFAULT NULL)
RETURNS TABLE (query_id bigint, rank integer, pk jsonb, chunk text, distance double precision,
               similarity double precision, rerank_score double precision)
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    version_id bigint;
    search_function text;
BEGIN
    -- The query embedded by a running canary's candidate too (pyembed.canary_version): both
    -- versions serve it (_canary_search, 077).
    IF candidate_query IS NOT NULL AND rerank IS NULL AND reranker IS NULL
       AND to_regprocedure('pyembed._canary_search(text,@extschema:vector@.vector,'
                           '@extschema:vector@.vector,integer,jsonb,integer,integer,boolean,'
                           'text)') IS NOT NULL THEN
        RETURN QUERY SELECT * FROM pyembed._canary_search(
            search.collection, query, candidate_query, k, filter, ef_search, probes, log,
            query_text);
        RETURN;
    END IF;
    IF rerank IS NOT NULL OR reranker IS NOT NULL THEN
        RETURN QUERY SELECT * FROM pyembed._reranked_search(
            search.collection, query, query_text, k, filter, ef_search, probes, log, rerank,
            reranker);
        RETURN;
    END IF;
    -- The name _compile_search gives the function, spelled out: a helper call costs a frame.
    SELECT pc.active_version_id,
           format('%I.%I', 'pyembed_store', pc.name || '_v' || pc.active_version_id || '_search')
    INTO version_id, search_function
    FROM pyembed.collections AS pc WHERE pc.name = search.collection;
    IF version_id IS NULL THEN
        -- An unknown collection, or one without an active version: the errors that say so.
        PERFORM pyembed._check_search(pyembed.collection(search.collection), query, k, filter);
    END IF;
    IF to_regproc(search_function) IS NULL THEN
        RAISE EXCEPTION 'the search function % of collection "%" is missing', search_function,
            search.collection
            USING ERRCODE = 'undefined_function',
                  HINT = 'run pyembed db upgrade, which creates it again';
    END IF;
    RETURN QUERY EXECUTE format('SELECT *, NULL::float8 FROM %s($1, $2, $3, $4, $5, $6, $7)',
                                search_function)
    USING query, k, filter, ef_search, probes, log, query_text;
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
    log boolean DEFAULT NULL,
    rerank integer DEFAULT NULL,
    reranker text DEFAULT NULL)
RETURNS TABLE (query_id bigint, rank integer, pk jsonb, chunk text, distance double precision,
               similarity double precision, rerank_score double precision)
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    query_vector @extschema:vector@.vector;
    candidate bigint;
    candidate_vector @extschema:vector@.vector;
BEGIN
    IF to_regprocedure('pyembed.embed(text,text)') IS NULL THEN
        RAISE EXCEPTION 'this database cannot embed query text (no pyembed.embed function)'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'pass a vector: embed the text in the application (or with pyembed serve) '
                         'and call pyembed.search(collection, $1::vector); a vector literal needs '
                         'the cast too: ''[0.1, ...]''::vector';
    END IF;
    -- By the active version's id, read here: a name would be resolved (and cached for
    -- seconds) by the embedding server, which embeds with the old model after a switch.
    EXECUTE 'SELECT pyembed.embed($1, $2)' INTO query_vector
    USING query, coalesce((SELECT c.active_version_id::text FROM pyembed.collections AS c
                           WHERE c.name = search.collection), collection);
    -- While a canary runs (077), its candidate embeds the query too, and both serve it.
    IF rerank IS NULL AND reranker IS NULL
       AND to_regprocedure('pyembed.canary_version(text)') IS NOT NULL THEN
        EXECUTE 'SELECT pyembed.canary_version($1)' INTO candidate USING collection;
        IF candidate IS NOT NULL THEN
            EXECUTE 'SELECT pyembed.embed($1, $2)' INTO candidate_vector
            USING query, candidate::text;
        END IF;
    END IF;
    RETURN QUERY SELECT * FROM pyembed.search(collection, query_vector, k, filter, ef_search,
                                              probes, log, query, rerank, reranker,
                                              candidate_vector);
END
$$;

-- Record what a user did with a result of a logged search: a click, a purchase, a judgment.
-- SECURITY DEFINER: nobody writes feedback directly; it is recorded for the caller, on a search
-- the caller may see (its own, as the same tenant), so no one forges another's signals.
CREATE OR REPLACE FUNCTION pyembed.record_feedback(
    query_id bigint,
    pk jsonb,
    signal text DEFAULT 'click',
    weight real DEFAULT 1.0)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key jsonb := CASE WHEN jsonb_typeof(pk) = 'array' THEN pk ELSE jsonb_build_array(pk) END;
    caller name := pyembed._caller();
    q pyembed.query_log;
    new_id bigint;
BEGIN
    SELECT * INTO q FROM pyembed.query_log AS l WHERE l.id = record_feedback.query_id;
    IF NOT FOUND OR NOT pyembed._may_see_search(caller, q.collection_id, q.searched_by, q.tenant) THEN
        RAISE EXCEPTION 'no logged search has id % that role % may see', query_id, caller
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'pass the query_id that pyembed.search returned to this role and tenant '
                         '(NULL when logging was off)';
    END IF;
    IF pk IS NULL OR jsonb_typeof(key) <> 'array' OR jsonb_array_length(key) = 0 THEN
        RAISE EXCEPTION 'pk must be the row''s key (a JSON value or array), not %', coalesce(pk::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'pass the pk column that pyembed.search returned';
    END IF;
    INSERT INTO pyembed.feedback (query_id, pk, signal, weight, recorded_by)
    VALUES (query_id, key, coalesce(signal, 'click'), coalesce(weight, 1.0), caller)
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;

-- A collection's query_log_retention setting as an interval; NULL when unset or not an interval
-- (settings written before they were validated must not stop pruning for every collection).
CREATE OR REPLACE FUNCTION pyembed._retention(settings jsonb)
RETURNS interval
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN nullif(settings->>'query_log_retention', '')::interval;
EXCEPTION WHEN data_exception THEN
    RETURN NULL;
END
$$;

-- Delete logged searches older than the retention (default: the collection's
-- settings->>'query_log_retention', else 90 days). Returns how many were deleted.
CREATE OR REPLACE FUNCTION pyembed.prune_query_log(older_than interval DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
    orphans bigint;
BEGIN
    IF older_than <= interval '0' THEN
        RAISE EXCEPTION 'older_than must be a positive interval, not %', older_than
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. pyembed.prune_query_log(''30 days'')';
    END IF;
    DELETE FROM pyembed.query_log AS q
    USING pyembed.collections AS c
    WHERE c.id = q.collection_id
      AND q.created_at < now() - coalesce(older_than, pyembed._retention(c.settings),
                                          interval '90 days');
    GET DIAGNOSTICS n = ROW_COUNT;
    -- A search that committed while its collection was being dropped: nothing else removes it.
    DELETE FROM pyembed.query_log AS q
    WHERE NOT EXISTS (SELECT FROM pyembed.collections AS c WHERE c.id = q.collection_id);
    GET DIAGNOSTICS orphans = ROW_COUNT;
    RETURN n + orphans;
END
$$;

-- Search functions of the stores that exist (kept ones of earlier versions included), generated
-- again on every upgrade: their SQL is this file's. Their privileges: 090_grants.sql.
DO $$
DECLARE
    c pyembed.collections;
BEGIN
    FOR c IN SELECT * FROM pyembed.collections LOOP
        PERFORM pyembed._compile_nearest(c, v) FROM pyembed._store_versions(c.name) AS v;
    END LOOP;
END
$$;
