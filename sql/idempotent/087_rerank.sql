-- requires: 0017
-- Reranking in SQL: pyembed.rerank(query, documents, reranker) scores texts with a registered
-- reranker (a cross-encoder), and pyembed.search(..., rerank => N) / hybrid_search(..., rerank
-- => N) reorder their top N candidates with it. pyembed.rerank exists only where plpython3u
-- does and asks like pyembed.embed (085, pyembed._model_call): embed_mode 'http' posts to the
-- embedding server's /v1/rerank at embed_url, 'local' loads the reranker inside the backend.
-- Re-applied on every upgrade: only CREATE OR REPLACE objects here.

DO $do$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_language WHERE lanname = 'plpython3u') THEN
        RETURN;
    END IF;
    EXECUTE $fn$
CREATE OR REPLACE FUNCTION pyembed.rerank(query text, documents text[], reranker text)
RETURNS double precision[]
LANGUAGE plpgsql
VOLATILE
PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    texts text[];
    present integer[];
    scores double precision[];
    block integer[];
    answer jsonb;
    item jsonb;
BEGIN
    IF query IS NULL OR documents IS NULL THEN
        RETURN NULL;
    END IF;
    IF reranker IS NULL OR reranker = '' THEN
        RAISE EXCEPTION 'pyembed.rerank needs a reranker' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'pass a registered reranker''s name or version id';
    END IF;
    texts := ARRAY(SELECT d.t FROM unnest(documents) WITH ORDINALITY AS d(t, i) ORDER BY d.i);
    scores := array_fill(NULL::double precision, ARRAY[cardinality(texts)]);
    present := ARRAY(SELECT i FROM generate_series(1, cardinality(texts)) AS i
                     WHERE texts[i] IS NOT NULL ORDER BY i);
    -- The server takes at most 1,000 documents a request.
    FOR head IN 1 .. cardinality(present) BY 1000 LOOP
        block := present[head : head + 999];
        answer := pyembed._model_call(
            'pyembed.rerank', '/v1/rerank',
            jsonb_build_object('model', reranker, 'query', query, 'return_documents', false,
                               'documents', to_jsonb(ARRAY(SELECT texts[b.i]
                                                           FROM unnest(block)
                                                                WITH ORDINALITY AS b(i, ord)
                                                           ORDER BY b.ord)))::text)::jsonb;
        FOR item IN SELECT r FROM jsonb_array_elements(answer->'results') AS r LOOP
            scores[block[(item->>'index')::int + 1]] := (item->>'relevance_score')::float8;
        END LOOP;
    END LOOP;
    RETURN scores;
END
$$
$fn$;
    EXECUTE 'COMMENT ON FUNCTION pyembed.rerank(text, text[], text) IS '
            '''a registered reranker''''s score of each document for the query (NULL for a NULL document)''';
END
$do$;

-- The reranker version a search of `c` uses: `reranker` (a name, NAME@N or a version id), else
-- the collection's settings->>'reranker', else the one `pyembed train-reranker` registers
-- (<collection>-reranker); a name means its newest ready version.
CREATE OR REPLACE FUNCTION pyembed._reranker_version(c pyembed.collections, reranker text)
RETURNS bigint
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wanted text := coalesce(nullif(reranker, ''), c.settings->>'reranker', c.name || '-reranker');
    hit record;
BEGIN
    SELECT v.id, v.status, m.task, m.name || ' v' || v.version AS label INTO hit
    FROM pyembed.model_versions AS v JOIN pyembed.models AS m ON m.id = v.model_id
    WHERE v.id = CASE WHEN wanted ~ '^[0-9]{1,18}$' THEN wanted::bigint END
       OR m.name || '@' || v.version = wanted
       OR m.name = wanted
    ORDER BY (v.id::text = wanted OR m.name || '@' || v.version = wanted) DESC,
             (v.status = 'ready') DESC, v.version DESC
    LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no reranker "%" for collection "%"', wanted, c.name
            USING ERRCODE = 'undefined_object',
                  HINT = format('train one from the log (pyembed train-reranker %s), register one '
                                '(pyembed models register), or name it: reranker => ''NAME'' or '
                                'the collection''s "reranker" setting', c.name);
    END IF;
    IF hit.task IS DISTINCT FROM 'reranker' THEN
        RAISE EXCEPTION '% is an embedding model, not a reranker', hit.label
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'name a reranker (pyembed models list shows each model''s task)';
    END IF;
    IF hit.status <> 'ready' THEN
        RAISE EXCEPTION 'reranker % is %, not ready', hit.label, hit.status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'name a ready version: reranker => ''NAME@N''';
    END IF;
    RETURN hit.id;
END
$$;

-- What reranking needs before it fetches a candidate: a candidate count of at least k, the
-- query text, pyembed.rerank. Returns the reranker's version id.
CREATE OR REPLACE FUNCTION pyembed._check_rerank(c pyembed.collections, query_text text,
                                                 k integer, rerank integer, reranker text)
RETURNS bigint
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF rerank IS NULL THEN
        RAISE EXCEPTION 'reranker => names the reranker of rerank => N, which is missing'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'pass rerank => N too: the number of candidates to reorder (e.g. 20)';
    END IF;
    IF query_text IS NULL OR btrim(query_text) = '' THEN
        RAISE EXCEPTION 'reranking needs the query text' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'pass query_text => the text the user typed, or search with the text form '
                   'pyembed.search(collection, text, ...)';
    END IF;
    IF rerank < coalesce(k, 1) OR rerank > pyembed.max_results() THEN
        RAISE EXCEPTION 'rerank => % is out of range', rerank
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('rerank => N reorders the top N candidates: N is at least k (%s) '
                                'and at most %s; 20 to 50 is the usual choice', k,
                                pyembed.max_results());
    END IF;
    IF to_regprocedure('pyembed.rerank(text,text[],text)') IS NULL THEN
        RAISE EXCEPTION 'this database cannot rerank (no pyembed.rerank function: no plpython3u)'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'rerank in the application: search without rerank => for the top N, '
                         'POST the query and their chunks to pyembed serve''s /v1/rerank; or '
                         'install plpython3u, CREATE EXTENSION plpython3u and run pyembed db upgrade';
    END IF;
    RETURN pyembed._reranker_version(c, reranker);
END
$$;

-- pyembed.search with rerank => N: the top N rows of the vector search, reordered by the
-- reranker's score of the chunk that matched (ties and NULL texts keep the vector order), the
-- best k returned and logged with both scores. It takes the collection by name and reads the
-- row itself: the log's writer trusts the row it is handed, and a caller could forge one.
CREATE OR REPLACE FUNCTION pyembed._reranked_search(
    collection text, query vector, query_text text, k integer, filter jsonb,
    ef_search integer, probes integer, log boolean, rerank integer, reranker text)
RETURNS TABLE (query_id bigint, rank integer, pk jsonb, chunk text, distance double precision,
               similarity double precision, rerank_score double precision)
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    started timestamptz := clock_timestamp();
    c pyembed.collections := pyembed.collection(collection);
    reranker_id bigint;
    hits record;
    scores double precision[];
    pks jsonb[];
    chunk_seqs integer[];
    chunks text[];
    distances double precision[];
    logged_scores double precision[];
    params jsonb;
    logged_id bigint;
BEGIN
    PERFORM pyembed._check_search(c, query, k, filter);
    reranker_id := pyembed._check_rerank(c, query_text, k, rerank, reranker);
    SELECT * INTO hits FROM pyembed._nearest_hits(c, query, rerank, filter, ef_search, probes);
    scores := pyembed.rerank(query_text, hits.chunks, reranker_id::text);
    SELECT coalesce(array_agg(r.pk ORDER BY r.score DESC NULLS LAST, r.ord), '{}'),
           coalesce(array_agg(r.chunk_seq ORDER BY r.score DESC NULLS LAST, r.ord), '{}'),
           coalesce(array_agg(r.chunk ORDER BY r.score DESC NULLS LAST, r.ord), '{}'),
           coalesce(array_agg(r.distance ORDER BY r.score DESC NULLS LAST, r.ord), '{}'),
           coalesce(array_agg(r.score ORDER BY r.score DESC NULLS LAST, r.ord), '{}')
    INTO pks, chunk_seqs, chunks, distances, scores
    FROM (SELECT u.* FROM unnest(hits.pks, hits.chunk_seqs, hits.chunks, hits.distances, scores)
                 WITH ORDINALITY AS u(pk, chunk_seq, chunk, distance, score, ord)
          ORDER BY u.score DESC NULLS LAST, u.ord LIMIT k) AS r;
    -- A NULL chunk has no score; the log keeps its aligned arrays without holes.
    logged_scores := ARRAY(SELECT coalesce(u.s, '-Infinity')
                           FROM unnest(scores) WITH ORDINALITY AS u(s, ord) ORDER BY u.ord);
    params := jsonb_build_object('filter', filter, 'ef_search', ef_search, 'probes', probes,
                                 'reranked', rerank);
    -- Arguments that are all variables: a plain call, so the stack shows this function.
    logged_id := pyembed._log_search(c, log, query, query_text, k, params, pks, chunk_seqs,
                                     distances, started, reranker_id, logged_scores);
    RETURN QUERY
    SELECT logged_id, r.ord::int, r.pk, r.chunk, r.distance, pyembed._similarity(c.distance, r.distance),
           r.score
    FROM unnest(pks, chunks, distances, scores) WITH ORDINALITY AS r(pk, chunk, distance, score, ord)
    ORDER BY r.ord;
END
$$;
