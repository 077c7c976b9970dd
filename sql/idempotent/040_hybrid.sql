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

-- How many chunks of the active store match one lexeme. A caller who sees every row of the
-- source reads it off the text index: the entries of the lexeme's posting list, which the bitmap
-- index scan of EXPLAIN ANALYZE reports without visiting the table (a frequent word matches most
-- of the store, and counting its rows would cost more than the whole search). Row-level security
-- hides rows from other callers, who must not learn what those rows contain: their rows are
-- counted, up to `cap`, and above it the planner's estimate from the column's statistics is used.
CREATE OR REPLACE FUNCTION pyembed._document_frequency(c pyembed.collections, lexeme tsquery,
                                                      cap integer)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
-- The posting list is read by a bitmap index scan, not a sequential scan, whatever the estimate.
SET enable_seqscan = off
AS $$
DECLARE
    store text := pyembed.store_table(c, c.active_version_id);
    df bigint;
    plan jsonb;
BEGIN
    IF pyembed._sees_every_row(to_regclass(pyembed._qualified_source(c))) THEN
        EXECUTE format('EXPLAIN (ANALYZE, TIMING OFF, SUMMARY OFF, FORMAT JSON) '
                       'SELECT FROM %s WHERE chunk_tsv @@ %L::tsquery LIMIT 1', store, lexeme)
        INTO plan;
        -- Fractional on PostgreSQL 18 ("3828.00"), an integer before.
        df := (jsonb_path_query_first(
            plan, 'strict $.**?(@."Node Type" == "Bitmap Index Scan")."Actual Rows"') #>> '{}')
              ::numeric::bigint;
        IF df IS NOT NULL THEN
            RETURN df;
        END IF;
    END IF;
    EXECUTE format('SELECT count(*) FROM (SELECT FROM %s WHERE chunk_tsv @@ $1 LIMIT %s) AS m',
                   store, cap + 1)
    INTO df USING lexeme;
    IF df <= cap THEN
        RETURN df;
    END IF;
    EXECUTE format('EXPLAIN (FORMAT JSON) SELECT FROM %s WHERE chunk_tsv @@ %L::tsquery',
                   store, lexeme)
    INTO plan;
    RETURN greatest((plan->0->'Plan'->>'Plan Rows')::numeric::bigint, df);
END
$$;

-- The n source rows whose chunks best match the query text by BM25 (k1 1.2, b 0.75), best chunk
-- per row, as a jsonb array of {pk, chunk_seq, chunk, distance, text_score}, best first. The
-- distance to the query vector comes along so fused results all carry one.
-- The cost per query is bounded whatever the store's size: the candidates scored are the chunks
-- matching the query's rarest lexemes, as many of them as fit in max_text_candidates() matches
-- (at least the rarest one; the first max_text_candidates() of its matches when it alone has
-- more), topped up from the next lexemes when they are fewer than n. Every query lexeme scores
-- them. A chunk that matches only the query's most frequent words is not a candidate: those words
-- add the least to BM25, so such a chunk seldom ranks above one that holds a rare word.
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
    budget integer := greatest(pyembed.max_text_candidates(), n);
    join_inside boolean := filter IS NOT NULL
                           OR NOT pyembed._sees_every_row(to_regclass(pyembed._qualified_source(c)));
    dims integer := @extschema:vector@.vector_dims(query);
    compiled record := pyembed._filter_sql(c, filter, '$6');
    idfs double precision[] := '{}';
    dfs bigint[] := '{}';
    rare tsquery;
    more tsquery;
    scan text;
    df bigint;
    spent bigint := 0;
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
        df := pyembed._document_frequency(c, pyembed._lexeme_tsquery(lexeme), budget);
        dfs := dfs || df;
        idfs := idfs || ln(1 + greatest(stats.documents - df + 0.5, 0.5) / (df + 0.5));
    END LOOP;
    FOR lexeme, df IN
        SELECT l.lexeme, l.df FROM unnest(lexemes, dfs) AS l(lexeme, df) ORDER BY l.df, l.lexeme
    LOOP
        IF rare IS NULL OR spent + df <= budget THEN
            rare := CASE WHEN rare IS NULL THEN pyembed._lexeme_tsquery(lexeme)
                         ELSE rare || pyembed._lexeme_tsquery(lexeme) END;
            spent := spent + df;
        ELSIF spent < n THEN  -- too few rare matches: the next lexeme tops them up
            more := CASE WHEN more IS NULL THEN pyembed._lexeme_tsquery(lexeme)
                         ELSE more || pyembed._lexeme_tsquery(lexeme) END;
            spent := spent + df;
        END IF;
    END LOOP;
    -- The source is joined (rows deleted since they were embedded drop out, row-level security
    -- applies) inside the candidates when a filter or row-level security needs it there, else
    -- only for the best rows.
    scan := format(
        'SELECT %s, st.chunk_seq, st.chunk_tsv, length(st.chunk_tsv) AS len FROM %s AS st %s'
        ' WHERE st.embedding IS NOT NULL%s',
        (SELECT string_agg(format('st.%I', col), ', ') FROM unnest(c.pk_columns) AS col), store,
        CASE WHEN join_inside THEN format('JOIN %s AS s USING (%s)', pyembed._qualified_source(c),
                                          pyembed._key_columns(c))
             ELSE '' END,
        CASE WHEN filter IS NULL THEN '' ELSE format(' AND (%s)', compiled.predicate) END);
    -- Scored set-wise (every candidate's lexemes unnested at once, joined with the query's and
    -- summed per chunk): a scoring subquery per candidate costs several times more. Rows tied on
    -- their score at the cut-off are kept by key, not by distance.
    EXECUTE format(
        'WITH rare AS MATERIALIZED (%1$s AND st.chunk_tsv @@ $2 LIMIT %2$s),'
        ' candidates AS (SELECT * FROM rare%3$s),'
        ' scored AS ('
        '  SELECT %4$s, n.chunk_seq, sum(w.idf * t.tf * 2.2 / (t.tf + 1.2 * (0.25 + 0.75 * n.len'
        '                                                    / greatest($5, 1)))) AS score'
        '  FROM candidates AS n'
        '  CROSS JOIN LATERAL (SELECT u.lexeme, coalesce(cardinality(u.positions), 1) AS tf'
        '                      FROM unnest(n.chunk_tsv) AS u) AS t'
        '  JOIN unnest($3::text[], $4::float8[]) AS w(lexeme, idf) ON w.lexeme = t.lexeme'
        '  GROUP BY %4$s, n.chunk_seq),'
        ' best AS (SELECT DISTINCT ON (%5$s) * FROM scored ORDER BY %5$s, score DESC, chunk_seq),'
        ' top AS (SELECT * FROM (SELECT * FROM best ORDER BY score DESC, %5$s LIMIT 2 * %6$s) AS b'
        '         %7$s ORDER BY score DESC, %5$s LIMIT %6$s)'
        ' SELECT coalesce(jsonb_agg(jsonb_build_object(''pk'', %8$s, ''chunk_seq'', top.chunk_seq,'
        '   ''chunk'', st.chunk, ''distance'', st.embedding %9$s %10$s, ''text_score'', top.score)'
        '   ORDER BY top.score DESC, st.embedding %9$s %10$s), ''[]'')'
        ' FROM top JOIN %11$s AS st USING (%5$s, chunk_seq)',
        scan, budget,
        CASE WHEN more IS NULL THEN ''
             ELSE format(' UNION ALL (%s AND st.chunk_tsv @@ $7 AND NOT st.chunk_tsv @@ $2'
                         ' LIMIT greatest(%s - (SELECT count(*) FROM rare), 0))', scan, budget)
             END,
        (SELECT string_agg(format('n.%I', col), ', ') FROM unnest(c.pk_columns) AS col),
        pyembed._key_columns(c), n,
        CASE WHEN join_inside THEN ''
             ELSE format('WHERE EXISTS (SELECT FROM %s AS s WHERE %s)', pyembed._qualified_source(c),
                         (SELECT string_agg(format('s.%1$I = b.%1$I', col), ' AND ')
                          FROM unnest(c.pk_columns) AS col)) END,
        pyembed._pk_sql(c, 'top'), pyembed._distance_operator(c.distance),
        pyembed._as_store_type(c, '$1', dims), store)
    INTO results
    USING query, rare, lexemes, idfs, stats.avg_length, compiled.params, more;
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
    log boolean DEFAULT NULL,
    rerank integer DEFAULT NULL,
    reranker text DEFAULT NULL)
RETURNS TABLE (query_id bigint, rank integer, pk jsonb, chunk text, score double precision,
               dense_rank integer, text_rank integer, distance double precision,
               similarity double precision, rerank_score double precision)
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
    reranker_id bigint;
    scores double precision[];
    logged_id bigint;
BEGIN
    IF query_text IS NULL OR btrim(query_text) = '' THEN
        RAISE EXCEPTION 'hybrid_search needs the query text' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'pass the text the user typed; for a vector alone use pyembed.search';
    END IF;
    IF query IS NULL AND to_regprocedure('pyembed.embed(text,text)') IS NOT NULL THEN
        EXECUTE 'SELECT pyembed.embed($1, $2)' INTO query  -- by version id, as search does
        USING query_text, coalesce(c.active_version_id::text, collection);
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
    IF rerank IS NOT NULL OR reranker IS NOT NULL THEN
        reranker_id := pyembed._check_rerank(c, query_text, k, rerank, reranker);
    END IF;
    pool := least(greatest(coalesce(candidates, 4 * k), k, rerank, 40), pyembed.max_results());
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
        LIMIT coalesce(rerank, k)) AS f;
    -- rerank => N: the reranker reorders the best N of the fusion; the best k stay.
    IF reranker_id IS NOT NULL THEN
        scores := pyembed.rerank(query_text,
                                 ARRAY(SELECT e.item->>'chunk'
                                       FROM jsonb_array_elements(fused) WITH ORDINALITY
                                            AS e(item, ord)
                                       ORDER BY e.ord),
                                 reranker_id::text);
        SELECT coalesce(jsonb_agg(r.item || jsonb_build_object('rerank_score', r.score)
                                  ORDER BY r.score DESC NULLS LAST, r.ord), '[]'::jsonb)
        INTO fused
        FROM (SELECT u.item, u.score, u.ord
              FROM ROWS FROM (jsonb_array_elements(fused), unnest(scores))
                   WITH ORDINALITY AS u(item, score, ord)
              ORDER BY u.score DESC NULLS LAST, u.ord LIMIT k) AS r;
    END IF;
    logged_id := pyembed._log_search(
        c, log, query, query_text, k,
        jsonb_build_object('filter', filter, 'ef_search', ef_search, 'probes', probes,
                           'rerank', 'hybrid', 'dense_weight', dense_weight,
                           'text_weight', text_weight, 'rrf_k', rrf_k, 'candidates', pool,
                           'reranked', rerank),
        fused, started, reranker_id);
    RETURN QUERY
    SELECT logged_id, r.ord::int, r.item->'pk', r.item->>'chunk', (r.item->>'score')::float8,
           (r.item->>'dense_rank')::int, (r.item->>'text_rank')::int, d.distance,
           pyembed._similarity(c.distance, d.distance), (r.item->>'rerank_score')::float8
    FROM jsonb_array_elements(fused) WITH ORDINALITY AS r(item, ord)
    CROSS JOIN LATERAL (SELECT (r.item->>'distance')::float8 AS distance) AS d
    ORDER BY r.ord;
END
$$;
