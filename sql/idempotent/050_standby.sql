-- requires: 0007
-- Searching on read-only standbys: the search runs there, its log is written on the primary.
-- Re-applied on every upgrade: only CREATE OR REPLACE objects here.

-- Log a search that ran elsewhere, typically on a read-only standby: the ranked keys it returned
-- (a jsonb array of primary keys, best first). Each key's chunk is its chunk nearest the query,
-- the one the search showed. Returns the query id for feedback, or NULL when logging is off.
CREATE OR REPLACE FUNCTION pyembed.log_search(
    collection text,
    query vector,
    keys jsonb,
    query_text text DEFAULT NULL,
    k integer DEFAULT NULL,
    params jsonb DEFAULT '{}',
    latency_ms double precision DEFAULT 0)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed.collection(log_search.collection);
    dims integer := @extschema:vector@.vector_dims(query);
    wanted integer := coalesce(k, greatest(jsonb_array_length(keys), 1));
    results jsonb;
BEGIN
    IF pg_is_in_recovery() THEN
        RAISE EXCEPTION 'a standby cannot write the query log' USING ERRCODE = 'read_only_sql_transaction',
            HINT = 'call pyembed.log_search on the primary';
    END IF;
    IF keys IS NULL OR jsonb_typeof(keys) <> 'array' THEN
        RAISE EXCEPTION 'keys must be a JSON array of primary keys, best first'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. ''[[42], [7]]''';
    END IF;
    PERFORM pyembed._check_search(c, query, wanted, NULL);
    EXECUTE format(
        'SELECT coalesce(jsonb_agg(jsonb_build_object(''pk'', item.v, ''chunk_seq'', b.chunk_seq, '
        '''distance'', b.distance) ORDER BY item.ord), ''[]'') '
        'FROM (SELECT CASE WHEN jsonb_typeof(e) = ''array'' THEN e ELSE jsonb_build_array(e) END, o '
        '      FROM jsonb_array_elements($1) WITH ORDINALITY AS x(e, o)) AS item(v, ord) '
        'CROSS JOIN LATERAL (SELECT st.chunk_seq, st.embedding %s %s AS distance FROM %s AS st '
        '  WHERE st.embedding IS NOT NULL AND %s ORDER BY 2 LIMIT 1) AS b',
        pyembed._distance_operator(c.distance),
        pyembed._as_store_type(c, '$2', dims),
        pyembed.store_table(c, c.active_version_id),
        pyembed._pk_match_sql(c, 'st', 'jsonb_build_array(item.v)'))
    INTO results
    USING keys, query;
    RETURN pyembed._log_search(
        c, NULL, query, query_text, wanted, params, results,
        clock_timestamp() - make_interval(secs => coalesce(latency_ms, 0) / 1000));
END
$$;
