-- requires: 0009
-- The usual questions about evaluations, answered in SQL.
-- Re-applied on every upgrade: only CREATE OR REPLACE objects here.

-- Every metric of every finished evaluation, with its collection, version and set by name.
CREATE OR REPLACE VIEW pyembed.eval_results AS
SELECT r.id AS run_id,
       c.name AS collection,
       r.model_version_id,
       mo.name || ' v' || v.version AS model_version,
       s.name AS eval_set,
       r.eval_set_id,
       r.kind,
       r.mode,
       m.metric,
       m.k,
       CASE WHEN m.k > 0 THEN m.metric || '@' || m.k ELSE m.metric END AS label,
       m.value,
       r.params,
       r.finished_at,
       -- As JSON: the column exists from 0017 on, and this file applies from 0009.
       (to_jsonb(r)->>'reranker_version_id')::bigint AS reranker_version_id,
       (SELECT rm.name || ' v' || rv.version
        FROM pyembed.model_versions AS rv JOIN pyembed.models AS rm ON rm.id = rv.model_id
        WHERE rv.id = (to_jsonb(r)->>'reranker_version_id')::bigint) AS reranker
FROM pyembed.eval_runs AS r
JOIN pyembed.eval_metrics AS m ON m.run_id = r.id
JOIN pyembed.collections AS c ON c.id = r.collection_id
JOIN pyembed.model_versions AS v ON v.id = r.model_version_id
JOIN pyembed.models AS mo ON mo.id = v.model_id
LEFT JOIN pyembed.eval_sets AS s ON s.id = r.eval_set_id
WHERE r.status = 'done';
COMMENT ON VIEW pyembed.eval_results IS 'every metric of every finished evaluation, named';

-- The latest value of each metric per version, set, kind and mode (and reranker, reranked).
CREATE OR REPLACE VIEW pyembed.eval_latest AS
SELECT DISTINCT ON (collection, model_version_id, eval_set_id, kind, mode, reranker_version_id,
                    metric, k) *
FROM pyembed.eval_results
ORDER BY collection, model_version_id, eval_set_id, kind, mode, reranker_version_id, metric, k,
         run_id DESC;
COMMENT ON VIEW pyembed.eval_latest IS 'latest metrics per version, eval set, kind and mode';

-- The paired comparison of two runs on a metric (0018's eval_comparisons), as JSON; NULL when
-- none was made, or before 0018 (this file applies from 0009).
CREATE OR REPLACE FUNCTION pyembed._comparison(candidate_run bigint, baseline_run bigint,
                                               metric text, k integer)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF to_regclass('pyembed.eval_comparisons') IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN (SELECT to_jsonb(c) FROM pyembed.eval_comparisons AS c
            WHERE c.candidate_run_id = candidate_run AND c.baseline_run_id = baseline_run
              AND c.metric = _comparison.metric AND c.k = _comparison.k);
END
$$;

-- Each version against its parent on the same set, kind, mode and metric, with the paired
-- test of the difference where one was made (training and the gate make them).
CREATE OR REPLACE VIEW pyembed.eval_vs_parent AS
SELECT child.collection,
       child.model_version_id,
       child.model_version,
       v.parent_version_id,
       parent.model_version AS parent_version,
       child.eval_set,
       child.mode,
       child.label,
       child.value,
       parent.value AS parent_value,
       child.value - parent.value AS delta,
       child.reranker,
       (cmp.c->>'queries')::integer AS queries,
       (cmp.c->>'p_value')::double precision AS p_value,
       (cmp.c->>'ci_low')::double precision AS ci_low,
       (cmp.c->>'ci_high')::double precision AS ci_high
FROM pyembed.eval_latest AS child
JOIN pyembed.model_versions AS v ON v.id = child.model_version_id
JOIN pyembed.eval_latest AS parent
  ON parent.model_version_id = v.parent_version_id AND parent.collection = child.collection
 AND parent.eval_set_id IS NOT DISTINCT FROM child.eval_set_id AND parent.kind = child.kind
 AND parent.mode = child.mode AND parent.metric = child.metric AND parent.k = child.k
 AND parent.reranker_version_id IS NOT DISTINCT FROM child.reranker_version_id
CROSS JOIN LATERAL (SELECT pyembed._comparison(child.run_id, parent.run_id, child.metric,
                                               child.k) AS c) AS cmp;
COMMENT ON VIEW pyembed.eval_vs_parent IS
    'each version against its parent: same set, mode (and reranker), metric';

-- The versions of each collection ranked on its gate metric (settings->>'gate_metric', default
-- ndcg@10), in its gate mode (settings->>'gate_mode': the model alone, or reranked, per
-- reranker), per eval set.
CREATE OR REPLACE VIEW pyembed.eval_leaderboard AS
SELECT l.collection,
       l.eval_set,
       rank() OVER (PARTITION BY l.collection, l.eval_set_id, l.reranker_version_id
                    ORDER BY l.value DESC) AS place,
       l.model_version_id,
       l.model_version,
       l.label AS metric,
       l.value,
       l.model_version_id = c.active_version_id AS active,
       l.finished_at,
       l.reranker
FROM pyembed.eval_latest AS l
JOIN pyembed.collections AS c ON c.name = l.collection
WHERE l.kind = 'retrieval' AND l.mode = coalesce(c.settings->>'gate_mode', 'exact')
  AND l.label = coalesce(c.settings->>'gate_metric', 'ndcg@10');
COMMENT ON VIEW pyembed.eval_leaderboard IS 'versions of each collection ranked on its gate metric';

-- Label by hand: judge a row for a query of an eval set (both created on first use).
CREATE OR REPLACE FUNCTION pyembed.judge(
    collection_name text,
    eval_set text,
    query_text text,
    pk jsonb,
    grade real DEFAULT 1.0)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed.collection(collection_name);
    set_id bigint;
    query_id bigint;
    key jsonb := CASE WHEN jsonb_typeof(pk) = 'array' THEN pk ELSE jsonb_build_array(pk) END;
BEGIN
    IF query_text IS NULL OR btrim(query_text) = '' THEN
        RAISE EXCEPTION 'the query text is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF grade IS NULL OR grade < 0 THEN
        RAISE EXCEPTION 'grade % is not a relevance grade', grade
            USING ERRCODE = 'invalid_parameter_value', HINT = '0 = not relevant, 1 = relevant, 2+ = more';
    END IF;
    INSERT INTO pyembed.eval_sets AS s (collection_id, name, source)
    VALUES (c.id, eval_set, 'manual')
    ON CONFLICT ON CONSTRAINT eval_sets_collection_id_name_key DO UPDATE SET name = s.name
    RETURNING s.id INTO set_id;
    INSERT INTO pyembed.eval_queries AS q (eval_set_id, query_text)
    VALUES (set_id, judge.query_text)
    ON CONFLICT ON CONSTRAINT eval_queries_eval_set_id_query_text_key
    DO UPDATE SET source_ref = q.source_ref
    RETURNING q.id INTO query_id;
    INSERT INTO pyembed.eval_judgments AS j (eval_query_id, pk, grade)
    VALUES (query_id, key, judge.grade)
    ON CONFLICT ON CONSTRAINT eval_judgments_pkey DO UPDATE SET grade = excluded.grade;
    RETURN query_id;
END
$$;

-- A source column's value per row, as text (the labels clustering is measured against).
CREATE OR REPLACE FUNCTION pyembed.row_labels(collection_name text, column_name text)
RETURNS TABLE (pk jsonb, label text)
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed.collection(collection_name);
BEGIN
    IF NOT pyembed._has_column(c, column_name) THEN
        RAISE EXCEPTION 'column "%" does not exist in %', column_name, pyembed._qualified_source(c)
            USING ERRCODE = 'undefined_column', HINT = 'name the source column that holds the labels';
    END IF;
    RETURN QUERY EXECUTE format('SELECT %s, s.%I::text FROM %s AS s WHERE s.%I IS NOT NULL',
                                pyembed._pk_sql(c, 's'), column_name,
                                pyembed._qualified_source(c), column_name);
END
$$;
