-- requires: 0007
-- Hybrid search: PostgreSQL full-text search ranked by BM25, fused with the vector ranking by
-- reciprocal rank fusion. Re-applied on every upgrade: only CREATE OR REPLACE objects here.
--
-- Why BM25 and not ts_rank_cd: on the WordNet task ts_rank_cd alone reached NDCG@10 0.23-0.32
-- and dragged the fusion below the dense ranking; BM25 over the same lexemes lifts it above.
-- The query's lexemes are ORed: plainto_tsquery ANDs every word and almost never matches a
-- sentence-long query.

-- The text search configuration of a collection: settings->>'text_search_config', else english.
CREATE OR REPLACE FUNCTION pyembed._text_search_config(c pyembed.collections)
RETURNS regconfig
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name text := coalesce(c.settings->>'text_search_config', 'english');
BEGIN
    RETURN name::regconfig;
EXCEPTION WHEN undefined_object THEN
    RAISE EXCEPTION 'text search configuration "%" does not exist', name
        USING ERRCODE = 'undefined_object',
              HINT = 'use one of: ' || (SELECT string_agg(cfgname, ', ' ORDER BY cfgname)
                                        FROM pg_ts_config);
END
$$;

-- Give a store its tsvector column (generated from the chunk) and GIN index; with rebuild, drop
-- and recreate them, e.g. after the collection's text search configuration changed.
CREATE OR REPLACE FUNCTION pyembed._create_text_search(c pyembed.collections, version_id bigint,
                                                      rebuild boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    store text := pyembed.store_table(c, version_id);
    cfg regconfig := pyembed._text_search_config(c);
BEGIN
    IF rebuild THEN
        EXECUTE format('ALTER TABLE %s DROP COLUMN IF EXISTS chunk_tsv', store);
        DELETE FROM pyembed.text_search_stats
        WHERE collection_id = c.id AND model_version_id = version_id;
    END IF;
    EXECUTE format('ALTER TABLE %s ADD COLUMN IF NOT EXISTS chunk_tsv tsvector '
                   'GENERATED ALWAYS AS (to_tsvector(%L::regconfig, chunk)) STORED',
                   store, cfg::text);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gin (chunk_tsv)',
                   pyembed._store_name(c.name, version_id) || '_chunk_tsv', store);
END
$$;

-- BM25's corpus statistics for the active store: chunks with an embedding and their mean length
-- in distinct lexemes. Kept in text_search_stats and recomputed when missing, older than an hour,
-- or off by more than a tenth from the live row count; on a standby the primary's row is used.
CREATE OR REPLACE FUNCTION pyembed._text_stats(c pyembed.collections, OUT documents bigint,
                                               OUT avg_length double precision)
LANGUAGE plpgsql
VOLATILE
-- SECURITY DEFINER: the statistics cover the whole store (readers see only their rows of it)
-- and only pyembed writes them; they are counts, never text.
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    store text;
    kept pyembed.text_search_stats;
    live bigint;
BEGIN
    -- The caller hands in the row: read it again, so the statistics are those of its own store.
    SELECT * INTO c FROM pyembed.collections AS t WHERE t.id = c.id;
    IF NOT FOUND OR c.active_version_id IS NULL THEN
        RETURN;
    END IF;
    store := pyembed.store_table(c, c.active_version_id);
    live := pg_stat_get_live_tuples(to_regclass(store));
    SELECT * INTO kept FROM pyembed.text_search_stats
    WHERE collection_id = c.id AND model_version_id = c.active_version_id;
    IF FOUND AND (pg_is_in_recovery()
                  OR (kept.refreshed_at > now() - interval '1 hour'
                      AND abs(live - kept.documents) <= greatest(kept.documents, 100) / 10)) THEN
        documents := kept.documents;
        avg_length := kept.avg_length;
        RETURN;
    END IF;
    EXECUTE format('SELECT count(*), coalesce(avg(length(chunk_tsv)), 0) FROM %s '
                   'WHERE embedding IS NOT NULL', store)
    INTO documents, avg_length;
    IF NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off' THEN
        INSERT INTO pyembed.text_search_stats AS t (collection_id, model_version_id, documents,
                                                    avg_length)
        VALUES (c.id, c.active_version_id, documents, avg_length)
        ON CONFLICT (collection_id, model_version_id) DO UPDATE
        SET documents = excluded.documents, avg_length = excluded.avg_length,
            refreshed_at = now();
    END IF;
END
$$;

-- The lexemes of a query's text the text side ranks by, at most max_query_lexemes() of them, so
-- a query costs a bounded number of document-frequency counts and candidates however long its
-- text is: the longest lexemes, as long words are rarer (a stand-in for their IDF before anything
-- is counted; keeping the most repeated ones instead picks common words, which match the most
-- chunks and cost several times more).
CREATE OR REPLACE FUNCTION pyembed._query_lexemes(c pyembed.collections, query_text text)
RETURNS text[]
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(lexeme ORDER BY lexeme), '{}')
    FROM (SELECT t.lexeme
          FROM unnest(to_tsvector(pyembed._text_search_config(c), coalesce(query_text, ''))) AS t
          ORDER BY length(t.lexeme) DESC, t.lexeme
          LIMIT pyembed.max_query_lexemes()) AS kept
$$;

-- A tsquery matching exactly one lexeme, quoted so that no character of it is read as syntax.
CREATE OR REPLACE FUNCTION pyembed._lexeme_tsquery(lexeme text)
RETURNS tsquery
LANGUAGE sql
IMMUTABLE
STRICT
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ('''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || '''')::tsquery
$$;

-- The n source rows whose chunks best match the query text by BM25 (k1 1.2, b 0.75), best chunk
-- per row, as a jsonb array of {pk, chunk_seq, chunk, distance, text_score}, best first. The
-- distance to the query vector comes along so fused results all carry one.
CREATE OR REPLACE FUNCTION pyembed._text_matches(c pyembed.collections, query_text text,
                                                query vector, n integer, filter jsonb)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    store text := pyembed.store_table(c, c.active_version_id);
    lexemes text[] := pyembed._query_lexemes(c, query_text);
    dims integer := @extschema:vector@.vector_dims(query);
    idfs double precision[] := '{}';
    any_lexeme tsquery;
    one tsquery;
    df bigint;
    lexeme text;
    stats record;
    results jsonb;
BEGIN
    IF cardinality(lexemes) = 0 THEN
        RETURN '[]'::jsonb;  -- only stop words: nothing for the text side to rank
    END IF;
    stats := pyembed._text_stats(c);
    IF stats.documents = 0 THEN
        RETURN '[]'::jsonb;
    END IF;
    FOREACH lexeme IN ARRAY lexemes LOOP
        one := pyembed._lexeme_tsquery(lexeme);
        EXECUTE format('SELECT count(*) FROM %s WHERE chunk_tsv @@ $1', store) INTO df USING one;
        idfs := idfs || ln(1 + (stats.documents - df + 0.5) / (df + 0.5));
        any_lexeme := CASE WHEN any_lexeme IS NULL THEN one ELSE any_lexeme || one END;
    END LOOP;
    EXECUTE format(
        'WITH scored AS ('
        '  SELECT %1$s AS pk, st.chunk_seq, st.chunk, st.embedding %2$s %3$s AS distance, b.score'
        '  FROM %4$s AS st JOIN %5$s AS s USING (%6$s)'
        '  CROSS JOIN LATERAL ('
        '    SELECT sum(w.idf * u.tf * 2.2 / (u.tf + 1.2 * (0.25 + 0.75 * length(st.chunk_tsv)'
        '                                                   / greatest($5, 1)))) AS score'
        '    FROM (SELECT t.lexeme, coalesce(cardinality(t.positions), 1) AS tf'
        '          FROM unnest(st.chunk_tsv) AS t) AS u'
        '    JOIN unnest($3::text[], $4::float8[]) AS w(lexeme, idf) USING (lexeme)) AS b'
        '  WHERE st.chunk_tsv @@ $2 AND st.embedding IS NOT NULL%7$s),'
        ' best AS (SELECT DISTINCT ON (pk) * FROM scored ORDER BY pk, score DESC, distance)'
        ' SELECT coalesce(jsonb_agg(jsonb_build_object(''pk'', pk, ''chunk_seq'', chunk_seq,'
        '   ''chunk'', chunk, ''distance'', distance, ''text_score'', score)'
        '   ORDER BY score DESC, distance), ''[]'')'
        ' FROM (SELECT * FROM best ORDER BY score DESC, distance LIMIT %8$s) AS top',
        pyembed._pk_sql(c, 'st'), pyembed._distance_operator(c.distance),
        pyembed._as_store_type(c, '$1', dims),
        store, pyembed._qualified_source(c),
        pyembed._key_columns(c),
        CASE WHEN filter IS NULL THEN '' ELSE ' AND to_jsonb(s) @> $6' END, n)
    INTO results
    USING query, any_lexeme, lexemes, idfs, stats.avg_length, filter;
    RETURN results;
END
$$;

-- Vector search and BM25 full-text search over the same chunks, fused by reciprocal rank
-- fusion: score = dense_weight / (rrf_k + dense rank) + text_weight / (rrf_k + text rank).
-- Each side ranks `candidates` rows (default 4k, at least 40). A row found by one side only
-- scores that side's term; a weight of 0 turns a side off. Logged like pyembed.search.
CREATE OR REPLACE FUNCTION pyembed.hybrid_search(
    collection text,
    query_text text,
    query vector DEFAULT NULL,
    k integer DEFAULT 10,
    dense_weight double precision DEFAULT 1.0,
    text_weight double precision DEFAULT 1.0,
    rrf_k integer DEFAULT 60,
    candidates integer DEFAULT NULL,
    filter jsonb DEFAULT NULL,
    ef_search integer DEFAULT NULL,
    probes integer DEFAULT NULL,
    log boolean DEFAULT NULL)
RETURNS TABLE (query_id bigint, rank integer, pk jsonb, chunk text, score double precision,
               dense_rank integer, text_rank integer, distance double precision,
               similarity double precision)
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed.collection(hybrid_search.collection);
    started timestamptz := clock_timestamp();
    pool integer;
    dense jsonb;
    lexical jsonb;
    fused jsonb;
    logged_id bigint;
BEGIN
    IF query_text IS NULL OR btrim(query_text) = '' THEN
        RAISE EXCEPTION 'hybrid_search needs the query text' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'pass the text the user typed; for a vector alone use pyembed.search';
    END IF;
    IF query IS NULL AND to_regprocedure('pyembed.embed(text,text)') IS NOT NULL THEN
        EXECUTE 'SELECT pyembed.embed($1, $2)' INTO query USING query_text, collection;
    END IF;
    PERFORM pyembed._check_search(c, query, k, filter);
    IF dense_weight IS NULL OR text_weight IS NULL OR dense_weight < 0 OR text_weight < 0
       OR dense_weight + text_weight = 0
       OR dense_weight IN ('NaN', 'Infinity') OR text_weight IN ('NaN', 'Infinity') THEN
        RAISE EXCEPTION 'weights % (dense) and % (text) cannot rank anything', dense_weight, text_weight
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'weights are finite, non-negative numbers and at least one is positive';
    END IF;
    IF rrf_k IS NULL OR rrf_k < 1 THEN
        RAISE EXCEPTION 'rrf_k = % is out of range', rrf_k USING ERRCODE = 'invalid_parameter_value',
            HINT = 'rrf_k is at least 1; 60 is the usual choice';
    END IF;
    pool := least(greatest(coalesce(candidates, 4 * k), k, 40), pyembed.max_results());
    filter := pyembed._typed_filter(c, filter);
    dense := CASE WHEN dense_weight > 0
                  THEN pyembed._nearest(c, query, pool, filter, ef_search, probes)
                  ELSE '[]'::jsonb END;
    lexical := CASE WHEN text_weight > 0
                    THEN pyembed._text_matches(c, query_text, query, pool, filter)
                    ELSE '[]'::jsonb END;
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'pk', f.pk, 'chunk_seq', f.item->'chunk_seq', 'chunk', f.item->'chunk',
               'distance', f.item->'distance', 'score', f.score, 'dense_rank', f.dense_rank,
               'text_rank', f.text_rank)
             ORDER BY f.score DESC, f.dense_rank NULLS LAST, f.text_rank), '[]'::jsonb)
    INTO fused
    FROM (
        SELECT coalesce(d.item->'pk', t.item->'pk') AS pk, coalesce(d.item, t.item) AS item,
               d.ord::int AS dense_rank, t.ord::int AS text_rank,
               coalesce(dense_weight / (rrf_k + d.ord), 0)
               + coalesce(text_weight / (rrf_k + t.ord), 0) AS score
        FROM jsonb_array_elements(dense) WITH ORDINALITY AS d(item, ord)
        FULL JOIN jsonb_array_elements(lexical) WITH ORDINALITY AS t(item, ord)
          ON t.item->'pk' = d.item->'pk'
        ORDER BY score DESC, d.ord NULLS LAST, t.ord
        LIMIT k) AS f;
    logged_id := pyembed._log_search(
        c, log, query, query_text, k,
        jsonb_build_object('filter', filter, 'ef_search', ef_search, 'probes', probes,
                           'rerank', 'hybrid', 'dense_weight', dense_weight,
                           'text_weight', text_weight, 'rrf_k', rrf_k, 'candidates', pool),
        fused, started);
    RETURN QUERY
    SELECT logged_id, r.ord::int, r.item->'pk', r.item->>'chunk', (r.item->>'score')::float8,
           (r.item->>'dense_rank')::int, (r.item->>'text_rank')::int, d.distance,
           pyembed._similarity(c.distance, d.distance)
    FROM jsonb_array_elements(fused) WITH ORDINALITY AS r(item, ord)
    CROSS JOIN LATERAL (SELECT (r.item->>'distance')::float8 AS distance) AS d
    ORDER BY r.ord;
END
$$;
