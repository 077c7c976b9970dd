-- Named queries of evaluation: eval sets, runs and metrics, the report.
-- Python runs them by name (pyembed.db.queries.get); the names are unique across sql/queries/.

-- name: store_embeddings
SELECT pk, embedding FROM pyembed.store_embeddings(%(collection)s, %(version_id)s);

-- name: store_chunks
SELECT pk, chunk, embedding FROM pyembed.store_chunks(%(collection)s, %(version_id)s);

-- name: source_texts
SELECT pk, body FROM pyembed.source_texts(%(collection)s);

-- name: eval_set_find
-- An eval set of the collection by name, or its newest one.
SELECT s.id, s.name FROM pyembed.eval_sets AS s JOIN pyembed.collections AS c ON c.id = s.collection_id
WHERE c.name = %(collection)s AND (%(name)s::text IS NULL OR s.name = %(name)s)
ORDER BY s.id DESC LIMIT 1;

-- name: eval_set_judgments
SELECT q.id, q.query_text, j.pk, j.grade
FROM pyembed.eval_queries AS q LEFT JOIN pyembed.eval_judgments AS j ON j.eval_query_id = q.id
WHERE q.eval_set_id = %(id)s
ORDER BY q.id;

-- name: eval_set_create
INSERT INTO pyembed.eval_sets (collection_id, name, source, description, details)
SELECT c.id, %(name)s, %(source)s, %(description)s, %(details)s
FROM pyembed.collections AS c WHERE c.name = %(collection)s
RETURNING id;

-- name: eval_set_fill
-- The queries of a new eval set and their judgments (the caller merged duplicates).
WITH added AS (
    INSERT INTO pyembed.eval_queries (eval_set_id, query_text)
    SELECT %(set_id)s, t FROM unnest(%(texts)s::text[]) AS t
    RETURNING id, query_text)
INSERT INTO pyembed.eval_judgments (eval_query_id, pk, grade)
SELECT a.id, r.pk, r.grade
FROM added AS a
JOIN jsonb_to_recordset(%(judgments)s) AS r(query_text text, pk jsonb, grade real) USING (query_text);

-- name: eval_run_record
INSERT INTO pyembed.eval_runs (collection_id, model_version_id, eval_set_id, kind, mode, params,
                               status, error, started_at, finished_at, reranker_version_id)
SELECT c.id, %(version_id)s, %(set_id)s, %(kind)s, %(mode)s, %(params)s, 'done', NULL,
       %(started_at)s, now(), %(reranker_version_id)s
FROM pyembed.collections AS c WHERE c.name = %(collection)s
RETURNING id;

-- name: collection_reranker
-- The reranker version a collection's reranked searches use (pyembed._reranker_version).
SELECT pyembed._reranker_version(c, %(reranker)s) FROM pyembed.collections AS c
WHERE c.name = %(collection)s;

-- name: eval_metric_add
INSERT INTO pyembed.eval_metrics (run_id, metric, k, value) VALUES (%(run_id)s, %(metric)s, %(k)s, %(value)s);

-- name: collection_eval_info
SELECT active_version_id, distance, chunk_tokens, chunk_overlap
FROM pyembed.collections WHERE name = %(name)s;

-- name: search_ranked
SELECT pk FROM pyembed.search(%(collection)s, %(query)s::vector, %(k)s, log => false);

-- name: eval_set_name
SELECT name FROM pyembed.eval_sets WHERE id = %(id)s;

-- name: report_collections
SELECT collection, source, source_rows, embedded_rows, skipped_rows, chunks, pending, retrying,
       failed, oldest_pending_age, active_model_version, pending_model_version
FROM pyembed.collection_status
WHERE %(collection)s::text IS NULL OR collection = %(collection)s
ORDER BY collection;

-- name: report_metrics
SELECT collection, model_version, eval_set,
       CASE WHEN mode = 'reranked' THEN 'reranked by ' || reranker ELSE mode END AS mode,
       label, value, finished_at
FROM pyembed.eval_latest
WHERE kind = 'retrieval' AND label IN ('ndcg@10', 'mrr@10', 'recall@10')
  AND (%(collection)s::text IS NULL OR collection = %(collection)s)
ORDER BY collection, eval_set, label, model_version, mode;

-- name: report_training
SELECT r.id AS run_id, c.name AS collection, r.loss AS loss_name, m.step, m.loss
FROM pyembed.training_runs AS r
JOIN pyembed.collections AS c ON c.id = r.collection_id
JOIN pyembed.training_metrics AS m ON m.run_id = r.id
WHERE %(collection)s::text IS NULL OR c.name = %(collection)s
ORDER BY r.id, m.step;

-- name: report_tuning
SELECT b.index_name, b.tuning
FROM pyembed.index_builds AS b JOIN pyembed.collections AS c ON c.id = b.collection_id
WHERE b.tuning IS NOT NULL AND jsonb_array_length(b.tuning) > 0
  AND (%(collection)s::text IS NULL OR c.name = %(collection)s)
ORDER BY b.id DESC LIMIT 4;

-- name: report_workers
SELECT id, hostname, state, alive, since_heartbeat, rows_embedded, chunks_written, failures,
       last_error
FROM pyembed.worker_status  -- workers serve every collection: the report lists them all
ORDER BY started_at DESC LIMIT 20;

-- name: report_deployments
SELECT d.created_at, c.name AS collection, d.action, d.from_version_id, d.to_version_id,
       d.reason, d.metrics
FROM pyembed.deployments AS d JOIN pyembed.collections AS c ON c.id = d.collection_id
WHERE %(collection)s::text IS NULL OR c.name = %(collection)s
ORDER BY d.id DESC LIMIT 50;

-- name: eval_query_values_add
INSERT INTO pyembed.eval_query_values (run_id, metric, k, query_ids, "values")
VALUES (%(run_id)s, %(metric)s, %(k)s, %(query_ids)s, %(values)s);

-- name: eval_query_values_get
-- Per-query values of a metric in two runs, paired by eval query: (query id, candidate, baseline).
SELECT c.q, c.v, b.v
FROM (SELECT u.q, u.v FROM pyembed.eval_query_values AS x, unnest(x.query_ids, x."values") AS u(q, v)
      WHERE x.run_id = %(candidate)s AND x.metric = %(metric)s AND x.k = %(k)s) AS c
JOIN (SELECT u.q, u.v FROM pyembed.eval_query_values AS x, unnest(x.query_ids, x."values") AS u(q, v)
      WHERE x.run_id = %(baseline)s AND x.metric = %(metric)s AND x.k = %(k)s) AS b
  ON b.q = c.q
ORDER BY c.q;

-- name: eval_query_values_exist
SELECT count(DISTINCT run_id) FROM pyembed.eval_query_values
WHERE run_id IN (%(candidate)s, %(baseline)s) AND metric = %(metric)s AND k = %(k)s;

-- name: eval_comparison_save
INSERT INTO pyembed.eval_comparisons (candidate_run_id, baseline_run_id, metric, k, queries, delta,
                                      ci_low, ci_high, p_value, method)
VALUES (%(candidate)s, %(baseline)s, %(metric)s, %(k)s, %(queries)s, %(delta)s, %(ci_low)s,
        %(ci_high)s, %(p_value)s, %(method)s)
ON CONFLICT (candidate_run_id, baseline_run_id, metric, k) DO UPDATE
SET queries = excluded.queries, delta = excluded.delta, ci_low = excluded.ci_low,
    ci_high = excluded.ci_high, p_value = excluded.p_value, method = excluded.method,
    created_at = now();
